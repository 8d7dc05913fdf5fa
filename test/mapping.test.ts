import { describe, expect, test } from "bun:test";
import { TrtbError } from "../src/errors.ts";
import { Mapping } from "../src/mapping.ts";

describe("Mapping", () => {
  test("rank math: TP innermost", () => {
    const m = new Mapping({ tpSize: 2, ppSize: 3 });
    const ranks = Array.from({ length: 6 }, (_, r) => m.withRank(r)).map((x) => [x.tpRank, x.ppRank]);
    expect(ranks).toEqual([[0, 0], [1, 0], [0, 1], [1, 1], [0, 2], [1, 2]]);
  });
  test("pp_layers: first L % pp stages get one extra layer", () => {
    expect(Mapping.stageLayers(10, 3, 0)).toEqual([0, 1, 2, 3]);
    expect(Mapping.stageLayers(10, 3, 1)).toEqual([4, 5, 6]);
    expect(Mapping.stageLayers(10, 3, 2)).toEqual([7, 8, 9]);
    expect(Mapping.stageLayers(2, 2, 1)).toEqual([1]);
  });
  test("moe ranks", () => {
    const m = new Mapping({ tpSize: 4, moeEpSize: 2, rank: 3 });
    expect([m.moeTpSize, m.moeEpSize, m.moeEpRank, m.moeTpRank]).toEqual([2, 2, 1, 1]);
    expect(m.epExperts(8)).toEqual([4, 5, 6, 7]);
  });
  test("serialises the minimal key set, never rank", () => {
    expect(new Mapping({ tpSize: 2, ppSize: 2, rank: 3 }).toJSON()).toEqual({ world_size: 4, tp_size: 2, pp_size: 2 });
  });
  test("bad values are TrtbError CFG_MAPPING", () => {
    const codes = [
      () => new Mapping({ tpSize: 0 }),
      () => new Mapping({ tpSize: 2, rank: 2 }),
      () => new Mapping({ tpSize: 4, moeTpSize: 3, moeEpSize: 2 }),
      () => Mapping.fromJSON({ world_size: 3, tp_size: 2, pp_size: 1 }),
      () => Mapping.stageLayers(2, 3, 0),
    ].map((f) => {
      try {
        f();
        return "no error";
      } catch (e) {
        return (e as TrtbError).code;
      }
    });
    expect(codes).toEqual(["CFG_MAPPING", "CFG_MAPPING", "CFG_MAPPING", "CFG_MAPPING", "CFG_MAPPING"]);
  });
});
