import { describe, expect, test } from "bun:test";
import { TrtbError } from "../../src/errors.ts";
import { checkLaunch, rankFromEnv, spawnRanks } from "../../src/runtime/dist.ts";

const code = (f: () => unknown) => {
  try {
    f();
    return "no error";
  } catch (e) {
    return (e as TrtbError).code;
  }
};

describe("rank discovery from launcher environments", () => {
  test("each launcher", () => {
    expect(rankFromEnv({})).toEqual({ rank: 0, worldSize: 1, localRank: 0, source: "none" });
    expect(rankFromEnv({ OMPI_COMM_WORLD_RANK: "3", OMPI_COMM_WORLD_SIZE: "4", OMPI_COMM_WORLD_LOCAL_RANK: "1" })).toEqual({ rank: 3, worldSize: 4, localRank: 1, source: "mpi" });
    expect(rankFromEnv({ SLURM_PROCID: "1", SLURM_NTASKS: "2", SLURM_LOCALID: "1" })).toEqual({ rank: 1, worldSize: 2, localRank: 1, source: "slurm" });
    expect(rankFromEnv({ RANK: "1", WORLD_SIZE: "2", LOCAL_RANK: "0" })).toEqual({ rank: 1, worldSize: 2, localRank: 0, source: "torchrun" });
    expect(rankFromEnv({ PMI_RANK: "0", PMI_SIZE: "2" })).toEqual({ rank: 0, worldSize: 2, localRank: 0, source: "pmi" });
    // Ours wins over an outer launcher's.
    expect(rankFromEnv({ TRTB_RANK: "1", TRTB_WORLD_SIZE: "2", RANK: "0", WORLD_SIZE: "8" }).source).toBe("trtb");
  });
  test("bad values → DIST_BAD_ENV", () => {
    expect(code(() => rankFromEnv({ RANK: "2", WORLD_SIZE: "2" }))).toBe("DIST_BAD_ENV");
    expect(code(() => rankFromEnv({ RANK: "x", WORLD_SIZE: "2" }))).toBe("DIST_BAD_ENV");
    expect(code(() => rankFromEnv({ RANK: "0" }))).toBe("DIST_BAD_ENV");
    expect(code(() => rankFromEnv({ SLURM_PROCID: "0", SLURM_NTASKS: "0" }))).toBe("DIST_BAD_ENV");
  });
  test("launch checks: world size and GPUs", () => {
    expect(code(() => checkLaunch({ rank: 0, worldSize: 2, localRank: 0, source: "mpi" }, 4, 8))).toBe("DIST_WORLD_MISMATCH");
    expect(code(() => checkLaunch({ rank: 1, worldSize: 2, localRank: 1, source: "mpi" }, 2, 1))).toBe("DIST_NOT_ENOUGH_GPUS");
    expect(code(() => checkLaunch({ rank: 1, worldSize: 2, localRank: 1, source: "mpi" }, 2, 2))).toBe("no error");
  });
});

describe("spawnRanks", () => {
  test("one process per rank with its rank, GPU and NCCL_NVLS_ENABLE=0", async () => {
    const probe = "const e=process.env; console.log([e.TRTB_RANK,e.TRTB_WORLD_SIZE,e.TRTB_LOCAL_RANK,e.CUDA_VISIBLE_DEVICES,e.NCCL_NVLS_ENABLE].join(','))";
    const res = await spawnRanks([process.execPath, "-e", probe], 2, 2);
    expect(res.map((r) => [r.exitCode, r.stdout.trim()])).toEqual([[0, "0,2,0,0,0"], [0, "1,2,1,1,0"]]);
  });
  test("fewer GPUs than ranks → DIST_NOT_ENOUGH_GPUS before anything starts", async () => {
    await expect(spawnRanks([process.execPath, "-e", "1"], 2, 1)).rejects.toMatchObject({ code: "DIST_NOT_ENOUGH_GPUS" });
  });
  test("a failing rank takes its peers down instead of leaving them waiting", async () => {
    const script = "if (process.env.TRTB_RANK === '0') process.exit(3); await Bun.sleep(30000)";
    const res = await spawnRanks([process.execPath, "-e", script], 2, 2);
    expect(res[0]!.exitCode).toBe(3);
    expect(res[1]!.signal).toBe("SIGTERM"); // killed, not finished sleeping
  });
});
