/**
 * Multi-process rank discovery and launching for tp/pp engines (one process per rank).
 *
 * A process learns its place from the launcher that started it:
 *   mpirun        OMPI_COMM_WORLD_RANK / _SIZE / _LOCAL_RANK   (PMI_RANK / PMI_SIZE for MPICH)
 *   srun          SLURM_PROCID / SLURM_NTASKS / SLURM_LOCALID
 *   torchrun-like RANK / WORLD_SIZE / LOCAL_RANK
 *   ours          TRTB_RANK / TRTB_WORLD_SIZE / TRTB_LOCAL_RANK (set by `spawnRanks`)
 * With none of them it is rank 0 of 1. The local rank picks the GPU.
 */
import { TrtbError } from "../errors.ts";

export interface RankInfo {
  rank: number;
  worldSize: number;
  localRank: number;
  /** Which launcher's variables were used. */
  source: "trtb" | "mpi" | "pmi" | "slurm" | "torchrun" | "none";
}

const SOURCES: { source: RankInfo["source"]; rank: string; size: string; local?: string }[] = [
  { source: "trtb", rank: "TRTB_RANK", size: "TRTB_WORLD_SIZE", local: "TRTB_LOCAL_RANK" },
  { source: "mpi", rank: "OMPI_COMM_WORLD_RANK", size: "OMPI_COMM_WORLD_SIZE", local: "OMPI_COMM_WORLD_LOCAL_RANK" },
  { source: "pmi", rank: "PMI_RANK", size: "PMI_SIZE", local: "MPI_LOCALRANKID" },
  { source: "slurm", rank: "SLURM_PROCID", size: "SLURM_NTASKS", local: "SLURM_LOCALID" },
  { source: "torchrun", rank: "RANK", size: "WORLD_SIZE", local: "LOCAL_RANK" },
];

function intVar(env: Record<string, string | undefined>, name: string, min: number): number {
  const v = env[name]!;
  const n = Number(v);
  if (!/^\d+$/.test(v.trim()) || n < min) throw new TrtbError("DIST_BAD_ENV", `environment variable ${name}=${JSON.stringify(v)} is not an integer ≥ ${min}`);
  return n;
}

/** Rank, world size and local rank from the environment (first launcher whose variables are set). */
export function rankFromEnv(env: Record<string, string | undefined> = process.env): RankInfo {
  for (const s of SOURCES) {
    if (env[s.rank] === undefined && env[s.size] === undefined) continue;
    if (env[s.rank] === undefined || env[s.size] === undefined)
      throw new TrtbError("DIST_BAD_ENV", `${s.rank} and ${s.size} must be set together (found only ${env[s.rank] === undefined ? s.size : s.rank})`);
    const rank = intVar(env, s.rank, 0);
    const worldSize = intVar(env, s.size, 1);
    if (rank >= worldSize) throw new TrtbError("DIST_BAD_ENV", `${s.rank}=${rank} is not below ${s.size}=${worldSize}`);
    const localRank = s.local && env[s.local] !== undefined ? intVar(env, s.local, 0) : rank;
    return { rank, worldSize, localRank, source: s.source };
  }
  return { rank: 0, worldSize: 1, localRank: 0, source: "none" };
}

/** Check a launch against the engine and the GPUs of this host; clear errors when they disagree. */
export function checkLaunch(info: RankInfo, engineWorldSize: number, localGpus: number): void {
  if (info.worldSize !== engineWorldSize)
    throw new TrtbError("DIST_WORLD_MISMATCH",
      `the engine was built for ${engineWorldSize} rank(s) but the launcher (${info.source}) started ${info.worldSize} process(es)`);
  if (info.localRank >= localGpus)
    throw new TrtbError("DIST_NOT_ENOUGH_GPUS",
      `rank ${info.rank} needs local GPU ${info.localRank} but this host has ${localGpus} GPU(s); the engine needs ${engineWorldSize} GPU(s) in all`);
}

export interface SpawnResult {
  rank: number;
  exitCode: number | null;
  signal: string | null;
  stdout: string;
  stderr: string;
}

/**
 * Start `worldSize` copies of `cmd`, one per local GPU, each with TRTB_RANK / TRTB_WORLD_SIZE /
 * TRTB_LOCAL_RANK and CUDA_VISIBLE_DEVICES set, and NVLink multicast kept off (NCCL_NVLS_ENABLE=0).
 * Refuses to start when the host has fewer GPUs than ranks. If one rank fails the others are
 * killed, so a crashed rank never leaves its peers waiting in a collective.
 */
export async function spawnRanks(cmd: string[], worldSize: number, localGpus: number, env: Record<string, string> = {}): Promise<SpawnResult[]> {
  if (worldSize > localGpus)
    throw new TrtbError("DIST_NOT_ENOUGH_GPUS", `${worldSize} ranks need ${worldSize} GPUs; this host has ${localGpus}. Launch across hosts with mpirun or srun instead.`);
  const procs = Array.from({ length: worldSize }, (_, rank) =>
    Bun.spawn(cmd, {
      env: {
        ...process.env, ...env,
        TRTB_RANK: String(rank), TRTB_WORLD_SIZE: String(worldSize), TRTB_LOCAL_RANK: String(rank),
        CUDA_VISIBLE_DEVICES: String(rank), NCCL_NVLS_ENABLE: "0",
      },
      stdout: "pipe",
      stderr: "pipe",
    }));
  const results = await Promise.all(procs.map(async (p, rank) => {
    const [stdout, stderr, exitCode] = await Promise.all([new Response(p.stdout).text(), new Response(p.stderr).text(), p.exited]);
    if (exitCode !== 0) for (const q of procs) if (q !== p && q.exitCode === null) q.kill();
    return { rank, exitCode, signal: p.signalCode === null || p.signalCode === undefined ? null : String(p.signalCode), stdout, stderr };
  }));
  return results;
}
