/**
 * Rotary embedding frequencies, as Hugging Face computes them (fp32): default, linear and llama3
 * scaling. Shared by the CPU runner and (later) the GPU runtime's table upload.
 */
import { TrtbError } from "../../errors.ts";
import { ropeType } from "../../format/hf-config.ts";

const f = Math.fround;

export function ropeInvFreq(rotaryDim: number, base: number, scaling: Record<string, unknown> | null | undefined): Float32Array {
  const half = rotaryDim / 2;
  const inv = new Float32Array(half);
  for (let i = 0; i < half; i++) inv[i] = f(1 / f(base ** f((2 * i) / rotaryDim)));
  const type = ropeType(scaling);
  const num = (k: string, dflt?: number): number => {
    const v = scaling?.[k];
    if (typeof v === "number") return v;
    if (dflt !== undefined) return dflt;
    throw new TrtbError("CFG_INVALID", `rotary_scaling of type ${type} needs a numeric "${k}"`);
  };
  if (type === "default") return inv;
  if (type === "linear") {
    const factor = num("factor");
    for (let i = 0; i < half; i++) inv[i] = f(inv[i]! / factor);
    return inv;
  }
  if (type === "llama3") {
    const factor = num("factor");
    const low = num("low_freq_factor");
    const high = num("high_freq_factor");
    const oldCtx = num("original_max_position_embeddings");
    const lowWavelen = oldCtx / low;
    const highWavelen = oldCtx / high;
    for (let i = 0; i < half; i++) {
      const x = inv[i]!;
      const wavelen = (2 * Math.PI) / x;
      let y = wavelen > lowWavelen ? x / factor : x;
      const smooth = (oldCtx / wavelen - low) / (high - low);
      const medium = !(wavelen < highWavelen) && !(wavelen > lowWavelen);
      if (medium) y = (1 - smooth) * (y / factor) + smooth * y;
      inv[i] = f(y);
    }
    return inv;
  }
  throw new TrtbError("CFG_UNSUPPORTED", `rope scaling type ${JSON.stringify(type)} is not supported by the runtime (default, linear, llama3)`);
}
