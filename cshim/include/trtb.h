/*
 * trtb.h: the C ABI of trtllm-build's native shim. This is the single public header.
 *
 * Two shared libraries implement it:
 *
 *   libtrtb.so       CPU only. Depends on libc (and pthreads) and nothing else, so it loads on any
 *                    Linux machine, CUDA or not. Symbols: trtb_*.
 *   libtrtb_cuda.so  GPU kernels. Built only where CMake finds the CUDA toolkit. cudart is linked
 *                    statically, so at run time it needs only the driver (libcuda.so.1), which it
 *                    looks for when first used, not at load time. A machine with no driver can load
 *                    it: every call then returns TRTB_ERR_CUDA_UNAVAILABLE. Symbols: trtb_cuda_*.
 *                    Each library has its own last-error slot, status strings and ABI version, so
 *                    either loads without the other.
 *
 * The caller is bun:ffi, and that shapes the rules:
 *   - No struct is passed or returned by value. A params struct goes by pointer, and its first field
 *     is `uint32_t struct_size` so it can grow (append fields only).
 *   - A buffer is a pointer plus a `uint64_t` byte length. A NULL pointer is allowed only with
 *     length 0.
 *   - Every fallible call returns `int32_t`: 0 is success, a negative value is an error (the
 *     TRTB_ERR_* list below). On error, trtb_last_error() / trtb_cuda_last_error() holds the detail
 *     text for the calling thread. The text is kept until the next failing call on that thread.
 *     Success leaves it alone (errno style).
 *   - The shim never calls exit or abort and never prints. It never calls back into the caller, and
 *     the threads it starts finish before the call that started them returns.
 *   - Enums are append-only. A removed value stays as a comment so that numbers never change. Bump
 *     TRTB_ABI_VERSION on any change to a signature or a struct layout.
 *
 * Example (CPU):
 *     int32_t st = trtb_cast(src, n * 4, TRTB_DTYPE_F32, dst, n * 2, TRTB_DTYPE_BF16);
 *     if (st != TRTB_OK) { char msg[512]; trtb_last_error(msg, sizeof msg); ... }
 */
#ifndef TRTB_H
#define TRTB_H

#include <stddef.h>
#include <stdint.h>

#if defined(_WIN32)
#  if defined(TRTB_BUILDING)
#    define TRTB_API __declspec(dllexport)
#  else
#    define TRTB_API __declspec(dllimport)
#  endif
#else
#  define TRTB_API __attribute__((visibility("default")))
#endif

#ifdef __cplusplus
extern "C" {
#endif

/* ABI version of this header. libtrtb reports it from trtb_abi_version(), libtrtb_cuda from
 * trtb_cuda_abi_version(). The loader rejects a library whose number differs.
 *   1  convert, transpose, devices, streams, memory
 *   2  quantization: trtb_quantize / trtb_dequantize and their trtb_cuda_* twins
 *   3  weight-only engine layout: trtb_wo_pack
 *   4  the dtype conversion is named cast: trtb_convert -> trtb_cast, trtb_cuda_convert ->
 *      trtb_cuda_cast (same arguments, rules and results)
 *   5  trtb_find_nonfinite (NaN/Inf scan); the CPU runner's trtb_gemm_f32, trtb_gemm_isa and
 *      trtb_gated_act_f32 */
#define TRTB_ABI_VERSION 5u

/* ---------------------------------------------------------------------------------------------
 * Status codes (returned as int32_t). Append-only.
 * ------------------------------------------------------------------------------------------- */
enum {
  TRTB_OK = 0,
  /* A bad argument: a NULL pointer with a non-zero length, an element size other than 1/2/4/8,
   * overlapping source and destination, a NULL handle, an output pointer that is NULL. */
  TRTB_ERR_INVALID_ARG = -1,
  /* A dtype value that is not in trtb_dtype, or a conversion between dtypes the call does not
   * support. */
  TRTB_ERR_DTYPE = -2,
  /* Byte lengths that do not agree: not a whole number of elements, a destination that is not
   * exactly as large as the result, or rows * cols * elem_size larger than a uint64_t. */
  TRTB_ERR_SIZE = -3,
  /* A host allocation failed. */
  TRTB_ERR_OUT_OF_MEMORY = -4,
  /* A bug in the shim (an invariant did not hold). The last error says where. */
  TRTB_ERR_INTERNAL = -5,
  /* This build does not have the feature (for example TensorRT support was not compiled in). */
  TRTB_ERR_UNSUPPORTED = -6,

  /* CUDA (libtrtb_cuda only). */
  /* No usable driver: libcuda.so.1 is missing, or it is older than the runtime built in. */
  TRTB_ERR_CUDA_UNAVAILABLE = -100,
  /* The driver works but sees no CUDA device (or CUDA_VISIBLE_DEVICES hides them all). */
  TRTB_ERR_CUDA_NO_DEVICE = -101,
  /* A device allocation failed (cudaErrorMemoryAllocation). */
  TRTB_ERR_CUDA_OUT_OF_MEMORY = -102,
  /* Any other CUDA error. The last error names the call and gives cudaGetErrorName/String. Some
   * CUDA errors are sticky: after an illegal address every later call on that context fails too. */
  TRTB_ERR_CUDA = -103
};

/* ---------------------------------------------------------------------------------------------
 * Element types. Names and sizes match safetensors. Append-only, and the numbers are fixed:
 * 0 is never a valid dtype, so zeroed memory cannot pass for one.
 * ------------------------------------------------------------------------------------------- */
typedef enum trtb_dtype {
  TRTB_DTYPE_F32 = 1,
  TRTB_DTYPE_F16 = 2,
  TRTB_DTYPE_BF16 = 3,
  TRTB_DTYPE_F64 = 4,
  TRTB_DTYPE_I8 = 5,
  TRTB_DTYPE_U8 = 6,
  TRTB_DTYPE_I16 = 7,
  TRTB_DTYPE_U16 = 8,
  TRTB_DTYPE_I32 = 9,
  TRTB_DTYPE_U32 = 10,
  TRTB_DTYPE_I64 = 11,
  TRTB_DTYPE_U64 = 12,
  TRTB_DTYPE_BOOL = 13,
  TRTB_DTYPE_F8_E4M3 = 14,
  TRTB_DTYPE_F8_E5M2 = 15
} trtb_dtype;

/* ---------------------------------------------------------------------------------------------
 * libtrtb.so (CPU)
 * ------------------------------------------------------------------------------------------- */

/* TRTB_ABI_VERSION as this library was built. Never fails. */
TRTB_API uint32_t trtb_abi_version(void);

/* A static, NUL-terminated English name for a status code ("TRTB_ERR_SIZE: byte lengths do not
 * match ..."). An unknown code gives "unknown status". Never returns NULL. */
TRTB_API const char *trtb_status_str(int32_t status);

/* Copy the calling thread's last error text into buf and NUL-terminate it, truncating it to
 * buf_len - 1 bytes if needed. buf may be NULL only when buf_len is 0, which asks for the length
 * alone. Returns the full length of the text, excluding the NUL (0 when no error has happened on
 * this thread). */
TRTB_API int32_t trtb_last_error(char *buf, uint64_t buf_len);

/* Size in bytes of one element of dtype, or 0 for a value that is not a trtb_dtype. */
TRTB_API uint32_t trtb_dtype_size(int32_t dtype);

/* Set how many threads the large-buffer paths may use, and return the previous setting.
 * 0 (the default) means one per CPU this process may run on. 1 keeps all work on the calling thread.
 * Negative values are treated as 0. Process-wide. Small buffers always stay on the calling thread. */
TRTB_API int32_t trtb_set_num_threads(int32_t n);

/* Cast src (src_bytes bytes of src_dtype) into dst (dst_bytes bytes of dst_dtype), converting
 * every element:
 *   - F32, F16 and BF16 convert among themselves, rounding to nearest even. A value too large for
 *     the target becomes inf of the same sign. f16 subnormals are produced and read exactly. f32
 *     subnormals become signed zero in f16 and round normally in bf16.
 *   - NaN stays NaN. Narrowing keeps the sign, sets the quiet bit and keeps the top payload bits
 *     (f32 -> bf16: bits >> 16 | 0x0040; f32 -> f16: sign | 0x7e00 | (mantissa >> 13)). Widening
 *     keeps the payload exactly (bf16 -> f32: bits << 16; f16 -> f32: mantissa << 13, quiet bit
 *     unchanged). F16 <-> BF16 goes through f32 under these rules. This matches src/numeric.ts.
 *   - Same dtype on both sides, for any dtype: a byte copy.
 * Large buffers are split across threads (see trtb_set_num_threads). src and dst must not
 * overlap, except that src == dst with the same dtype is allowed and does nothing.
 * Returns TRTB_OK, or:
 *   TRTB_ERR_INVALID_ARG  NULL with a non-zero length, or overlapping buffers
 *   TRTB_ERR_DTYPE        a value that is not a trtb_dtype, or a pair other than the above
 *   TRTB_ERR_SIZE         src_bytes is not a multiple of the element size, or
 *                         dst_bytes != (src_bytes / size(src_dtype)) * size(dst_dtype) */
TRTB_API int32_t trtb_cast(const void *src, uint64_t src_bytes, int32_t src_dtype,
                           void *dst, uint64_t dst_bytes, int32_t dst_dtype);

/* Transpose a row-major rows x cols matrix of elem_size-byte elements:
 * dst[c * rows + r] = src[r * cols + c]. Cache-blocked. Large matrices are split across threads.
 * Bytes are copied as they are (any dtype of that size). A rows or cols of 0 is a no-op.
 * Returns TRTB_OK, or:
 *   TRTB_ERR_INVALID_ARG  elem_size not 1, 2, 4 or 8, NULL with a non-zero length, or overlap
 *   TRTB_ERR_SIZE         rows * cols * elem_size overflows, or src_bytes or dst_bytes differs
 *                         from it */
TRTB_API int32_t trtb_transpose2d(const void *src, uint64_t src_bytes, void *dst, uint64_t dst_bytes,
                                  uint64_t rows, uint64_t cols, uint32_t elem_size);

/* f32 matrix product of the CPU reference runner (cshim/cpu/gemm.c; ABI 5):
 *   y[r * ldy + c] = sum_i x[r * ldx + i] * W(c, i) (+ bias[c]),  r < m, c < n, i < k,
 * where W(c, i) = w[c * ldw + i] (W is [n, k]: rows are output channels), or w[i * ldw + c] with
 * TRTB_GEMM_W_KN (W is [k, n]). bias is NULL (bias_bytes 0) or n floats. Each element's summation
 * order depends only on k and the kernel set (trtb_gemm_isa), never on m, n, the leading dimensions
 * or the thread count, and zero-padding k leaves results unchanged. Threaded when large (see
 * trtb_set_num_threads). k == 0 gives bias (or 0). Buffers may be longer than the extents used.
 * Returns TRTB_OK, or:
 *   TRTB_ERR_INVALID_ARG  NULL with a length, a pointer not 4-byte aligned, unknown flags, a
 *                         leading dimension shorter than its row, or y overlapping x, w or bias
 *   TRTB_ERR_SIZE         a buffer shorter than its extent ((rows - 1) * ld + cols floats),
 *                         bias_bytes not 0 or n * 4, or extents that overflow */
#define TRTB_GEMM_W_KN (1u << 0)
TRTB_API int32_t trtb_gemm_f32(const float *x, uint64_t x_bytes, const float *w, uint64_t w_bytes, const float *bias,
                               uint64_t bias_bytes, float *y, uint64_t y_bytes, uint64_t m, uint64_t n, uint64_t k,
                               uint64_t ldx, uint64_t ldw, uint64_t ldy, uint32_t flags);

/* Kernel sets of trtb_gemm_f32. AUTO picks the widest this CPU has. */
enum { TRTB_GEMM_ISA_AUTO = 0, TRTB_GEMM_ISA_PORTABLE = 1, TRTB_GEMM_ISA_AVX2 = 2, TRTB_GEMM_ISA_AVX512 = 3 };
/* request -1: return the kernel set in use. 0..3: use that set from now on (process-wide) and
 * return the set in use. TRTB_ERR_INVALID_ARG for another value, TRTB_ERR_UNSUPPORTED for a set
 * this CPU or build lacks. */
TRTB_API int32_t trtb_gemm_isa(int32_t request);

/* Numeric sanity (ABI 5). Index of the first NaN or Inf element of src (src_bytes bytes of dtype)
 * into *first, or UINT64_MAX when every element is finite. Floats (F32, F16, BF16, F64, F8_E4M3
 * NaN, F8_E5M2) are scanned; integer and bool dtypes are always finite. Large buffers are split
 * across threads; the result is the same (the smallest bad index) on any thread count.
 * Returns TRTB_OK, or:
 *   TRTB_ERR_INVALID_ARG  first is NULL, or src is NULL with a non-zero length
 *   TRTB_ERR_DTYPE        a value that is not a trtb_dtype
 *   TRTB_ERR_SIZE         src_bytes is not a multiple of the element size */
TRTB_API int32_t trtb_find_nonfinite(const void *src, uint64_t src_bytes, int32_t dtype, uint64_t *first);

/* Gated activation of the runner's MLP (ABI 5): y[r * cols + c] = act(a[r * lda + c]) * g[r * ldg + c],
 * act(v) = v / (1 + exp(-v)) (SILU) or the tanh-form GELU, in f32 (results within a few ulp of
 * exact, the same on every CPU and thread count). y must not overlap a or g. Threaded when large.
 * Returns TRTB_OK, TRTB_ERR_INVALID_ARG (act, NULL, alignment, lda/ldg < cols, overlap) or
 * TRTB_ERR_SIZE (a buffer shorter than its extent). */
enum { TRTB_ACT_SILU = 1, TRTB_ACT_GELU_TANH = 2 };
TRTB_API int32_t trtb_gated_act_f32(const float *a, uint64_t a_bytes, const float *g, uint64_t g_bytes, float *y,
                                    uint64_t y_bytes, uint64_t rows, uint64_t cols, uint64_t lda, uint64_t ldg,
                                    int32_t act);

/* ---------------------------------------------------------------------------------------------
 * libtrtb_cuda.so (GPU)
 *
 * Device memory is a plain device pointer (void *) from trtb_cuda_malloc. Work goes on an
 * explicit stream (trtb_cuda_stream, made by trtb_cuda_stream_create for one device). Copies and
 * kernels are asynchronous with respect to the host: they return when queued, and
 * trtb_cuda_stream_sync waits for them. A host buffer handed to an asynchronous copy must stay
 * alive and unchanged until the stream has been synchronized.
 * ------------------------------------------------------------------------------------------- */

typedef struct trtb_cuda_stream trtb_cuda_stream; /* opaque */

/* Bits of trtb_cuda_features(). */
#define TRTB_CUDA_FEATURE_CUBLASLT (1u << 0) /* built with cuBLASLt (GEMM kernels) */
#define TRTB_CUDA_FEATURE_TENSORRT (1u << 1) /* built with TensorRT */

/* Filled by trtb_cuda_device_props. Set struct_size to sizeof(trtb_cuda_device_props) before the
 * call. Fields are only ever appended. */
typedef struct trtb_cuda_device_props {
  uint32_t struct_size;       /* in: sizeof(trtb_cuda_device_props) as the caller knows it */
  int32_t major;              /* compute capability, major (9 for H100) */
  int32_t minor;              /* compute capability, minor */
  int32_t multiprocessors;    /* number of SMs */
  uint64_t total_memory;      /* bytes of device memory */
  char name[256];             /* NUL-terminated device name */
} trtb_cuda_device_props;

/* Same meanings as their CPU counterparts, for this library. */
TRTB_API uint32_t trtb_cuda_abi_version(void);
TRTB_API const char *trtb_cuda_status_str(int32_t status);
TRTB_API int32_t trtb_cuda_last_error(char *buf, uint64_t buf_len);

/* TRTB_CUDA_FEATURE_* bits compiled into this build. Never fails. */
TRTB_API uint32_t trtb_cuda_features(void);

/* CUDA runtime version built in, as 1000 * major + 10 * minor (13000 for 13.0). Never fails. */
TRTB_API int32_t trtb_cuda_runtime_version(void);

/* Latest CUDA version the installed driver supports, in the same encoding, or 0 when there is no
 * driver. Never fails. */
TRTB_API int32_t trtb_cuda_driver_version(void);

/* Number of visible devices into *out. No device: TRTB_OK with *out = 0. No or too-old driver:
 * TRTB_ERR_CUDA_UNAVAILABLE (with *out = 0). NULL out: TRTB_ERR_INVALID_ARG. */
TRTB_API int32_t trtb_cuda_device_count(int32_t *out);

/* Properties of device into *props (see trtb_cuda_device_props).
 * TRTB_ERR_INVALID_ARG: props NULL, struct_size too small, or device out of range. */
TRTB_API int32_t trtb_cuda_device_props_get(int32_t device, trtb_cuda_device_props *props);

/* Wait until all work on device has finished (cudaDeviceSynchronize). */
TRTB_API int32_t trtb_cuda_device_sync(int32_t device);

/* Create a non-blocking stream on device into *out. Destroy it with trtb_cuda_stream_destroy. */
TRTB_API int32_t trtb_cuda_stream_create(int32_t device, trtb_cuda_stream **out);

/* Wait for the stream's pending work, then destroy it. NULL is a no-op (TRTB_OK). The handle is
 * freed even when an error is returned (the error is what the pending work left behind). */
TRTB_API int32_t trtb_cuda_stream_destroy(trtb_cuda_stream *stream);

/* Wait for everything queued on stream. */
TRTB_API int32_t trtb_cuda_stream_sync(trtb_cuda_stream *stream);

/* Device that stream belongs to into *out. */
TRTB_API int32_t trtb_cuda_stream_device(const trtb_cuda_stream *stream, int32_t *out);

/* Allocate bytes of device memory on device into *out. bytes == 0 gives *out = NULL and TRTB_OK.
 * TRTB_ERR_CUDA_OUT_OF_MEMORY when the device is full. */
TRTB_API int32_t trtb_cuda_malloc(int32_t device, uint64_t bytes, void **out);

/* Free memory from trtb_cuda_malloc. NULL is a no-op. cudaFree waits for the device first. */
TRTB_API int32_t trtb_cuda_free(void *ptr);

/* Queue a copy of bytes bytes on stream: host -> device, device -> host, device -> device.
 * Host memory may be pageable (slower) or pinned. TRTB_ERR_INVALID_ARG: NULL stream, or a NULL
 * pointer with bytes != 0. */
TRTB_API int32_t trtb_cuda_memcpy_h2d(trtb_cuda_stream *stream, void *dst, const void *src, uint64_t bytes);
TRTB_API int32_t trtb_cuda_memcpy_d2h(trtb_cuda_stream *stream, void *dst, const void *src, uint64_t bytes);
TRTB_API int32_t trtb_cuda_memcpy_d2d(trtb_cuda_stream *stream, void *dst, const void *src, uint64_t bytes);

/* Queue a fill of bytes bytes of device memory with value (low 8 bits). */
TRTB_API int32_t trtb_cuda_memset(trtb_cuda_stream *stream, void *dst, uint32_t value, uint64_t bytes);

/* trtb_cast on device pointers, queued on stream. Same dtypes, rounding, NaN rules and status
 * codes as trtb_cast, and bit-identical results. In addition TRTB_ERR_INVALID_ARG when stream
 * is NULL or a device pointer is not aligned to its element size (memory from trtb_cuda_malloc is
 * 256-byte aligned; offsets into it must keep the alignment). */
TRTB_API int32_t trtb_cuda_cast(trtb_cuda_stream *stream, const void *src, uint64_t src_bytes, int32_t src_dtype,
                                void *dst, uint64_t dst_bytes, int32_t dst_dtype);

/* trtb_transpose2d on device pointers, queued on stream. Same rules and status codes, plus the
 * NULL-stream and alignment (to elem_size) checks of trtb_cuda_cast. */
TRTB_API int32_t trtb_cuda_transpose2d(trtb_cuda_stream *stream, const void *src, uint64_t src_bytes,
                                       void *dst, uint64_t dst_bytes, uint64_t rows, uint64_t cols,
                                       uint32_t elem_size);

/* ---------------------------------------------------------------------------------------------
 * Quantization (ABI 2): symmetric, scale-only quantization of row-major weight matrices, in both
 * libraries with bit-identical results (trtb_quantize / trtb_cuda_quantize).
 *
 * A matrix has `rows` output channels of `cols` input channels (PyTorch [out, in]; stack the
 * experts of a MoE tensor as more rows). Each row is cut into groups of `group_size` columns
 * (group_size == cols: one scale per row, "per channel"), and every group gets one scale:
 *
 *   x = w (as f32), clamped to [clamp_lo, clamp_hi] if TRTB_QUANT_CLAMP is set
 *   s = max|x| / divisor; s = max(s, min_scale); s == 0 -> zero_scale   (f32, NaN never counts)
 *   stored scale = s rounded to scale_dtype (round to nearest even)
 *   q = quantize(x / s') where s' = the stored scale if TRTB_QUANT_DIVIDE_BY_STORED, else s
 *       INT8 / INT4_PACKED_ROWS: clamp to [qmin, qmax], round (trtb_qround); NaN or s' == 0 -> 0
 *       FP8_E4M3: clamp to [-448, 448], convert to e4m3 "fn" rounding to nearest even; NaN -> 0x7f
 *
 * Outputs:
 *   INT8              int8 [rows, cols]
 *   INT4_PACKED_ROWS  int8 [rows / 2, cols]: byte (r2, c) holds q[2 r2, c] in its low nibble and
 *                     q[2 r2 + 1, c] in its high nibble, two's complement (ModelOpt's
 *                     pack_int4_in_uint8: packed along the output axis). rows must be even.
 *   FP8_E4M3          e4m3 bytes [rows, cols]
 *   scales            scale_dtype [rows, cols / group_size]
 * The source is F32, F16 or BF16, read directly (no prior conversion needed).
 *
 * trtb_dequantize inverts it: w = f32(q) * f32(stored scale), narrowed to dst_dtype (RNE).
 * ------------------------------------------------------------------------------------------- */

typedef enum trtb_qformat {
  TRTB_QFORMAT_INT8 = 1,
  TRTB_QFORMAT_INT4_PACKED_ROWS = 2,
  TRTB_QFORMAT_FP8_E4M3 = 3
} trtb_qformat;

typedef enum trtb_qround {
  TRTB_QROUND_HALF_EVEN = 1, /* torch.round, rint */
  TRTB_QROUND_HALF_AWAY = 2  /* C round(): what TensorRT-LLM's symmetric_quantize uses */
} trtb_qround;

/* Bits of trtb_quant_params.flags. */
#define TRTB_QUANT_CLAMP (1u << 0)           /* clamp weights to [clamp_lo, clamp_hi] first */
#define TRTB_QUANT_DIVIDE_BY_STORED (1u << 1) /* divide by the stored (rounded) scale, not the f32 one */

/* Passed by pointer; set struct_size to sizeof(trtb_quant_params). Fields are only appended. */
typedef struct trtb_quant_params {
  uint32_t struct_size; /* in: sizeof(trtb_quant_params) as the caller knows it (80) */
  int32_t format;       /* trtb_qformat */
  int32_t src_dtype;    /* source dtype: F32, F16 or BF16 (ignored by dequantize) */
  int32_t scale_dtype;  /* dtype the scales are stored in: F32, F16 or BF16 */
  uint64_t rows;        /* output channels (all experts stacked) */
  uint64_t cols;        /* input channels */
  uint64_t group_size;  /* columns per scale; must divide cols */
  float divisor;        /* scale = amax / divisor: 7 (int4 AWQ), 448 (fp8), 128 or 8 (cutlass weight-only) */
  float min_scale;      /* lower bound of the scale, 0 for none */
  float zero_scale;     /* scale of an all-zero group (e.g. 1.0; 0 makes its q all 0) */
  float clamp_lo;       /* with TRTB_QUANT_CLAMP */
  float clamp_hi;
  int32_t qmin;         /* integer formats: range of q, inside [-128, 127] (INT8) or [-8, 7] (INT4) */
  int32_t qmax;
  int32_t rounding;     /* integer formats: trtb_qround */
  uint32_t flags;       /* TRTB_QUANT_* */
  uint32_t reserved;    /* 0 */
} trtb_quant_params;

/* Quantize src (rows x cols of p->src_dtype) into dst and scales as described above, in one pass
 * over the source. Large matrices are split across threads (trtb_set_num_threads).
 * Returns TRTB_OK, or:
 *   TRTB_ERR_INVALID_ARG  params NULL or struct_size too small, an unknown format / rounding / flag,
 *                         group_size not dividing cols, odd rows for INT4_PACKED_ROWS, a divisor that
 *                         is not finite and > 0, negative or non-finite min/zero scale, clamp_lo >=
 *                         clamp_hi, [qmin, qmax] outside the format, NULL with a length, overlap
 *   TRTB_ERR_DTYPE        src_dtype or scale_dtype not F32 / F16 / BF16
 *   TRTB_ERR_SIZE         src_bytes, dst_bytes or scales_bytes not exactly what the shape needs */
TRTB_API int32_t trtb_quantize(const trtb_quant_params *p, const void *src, uint64_t src_bytes, void *dst,
                               uint64_t dst_bytes, void *scales, uint64_t scales_bytes);

/* Dequantize q (p->format, rows x cols) with its stored scales into dst (dst_dtype: F32, F16 or
 * BF16). Uses format, scale_dtype, rows, cols and group_size of p. Same status codes. */
TRTB_API int32_t trtb_dequantize(const trtb_quant_params *p, const void *q, uint64_t q_bytes, const void *scales,
                                 uint64_t scales_bytes, void *dst, uint64_t dst_bytes, int32_t dst_dtype);

/* Weight-only engine layout (ABI 3): q (rows x cols int8 values, row-major; int4 values in
 * [-8, 7] for bits 4) into the tiled, offset-binary layout of the engine kernel described in
 * cshim/engine/kernels/gemm_wo.cu: rows padded to 16, cols to 32 (bits 8) or 64 (bits 4);
 * dst_bytes = ceil(rows/16) * ceil(cols/kt) * 512. Threaded by row tile.
 * Returns TRTB_OK, TRTB_ERR_INVALID_ARG (bits, shape, NULL) or TRTB_ERR_SIZE (buffer lengths). */
TRTB_API int32_t trtb_wo_pack(const void *q, uint64_t q_bytes, int64_t rows, int64_t cols, int32_t bits, void *dst,
                              uint64_t dst_bytes);

/* trtb_quantize / trtb_dequantize on device pointers, queued on stream, bit-identical to the CPU.
 * Same status codes, plus TRTB_ERR_INVALID_ARG for a NULL stream. */
TRTB_API int32_t trtb_cuda_quantize(trtb_cuda_stream *stream, const trtb_quant_params *p, const void *src,
                                    uint64_t src_bytes, void *dst, uint64_t dst_bytes, void *scales,
                                    uint64_t scales_bytes);
TRTB_API int32_t trtb_cuda_dequantize(trtb_cuda_stream *stream, const trtb_quant_params *p, const void *q,
                                      uint64_t q_bytes, const void *scales, uint64_t scales_bytes, void *dst,
                                      uint64_t dst_bytes, int32_t dst_dtype);

#ifdef __cplusplus
} /* extern "C" */
#endif

#endif /* TRTB_H */
