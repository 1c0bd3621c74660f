// Storage types shared by the kernels, free of CUDA's half headers so that every kernel
// compiles the same way under NVRTC (through CuPy) and under nvcc (the CI compile check).
#pragma once

struct tk_half { unsigned short bits; };      // IEEE 754 binary16, as torch.float16
struct tk_bfloat16 { unsigned short bits; };  // bfloat16, as torch.bfloat16

__device__ __forceinline__ float tk_to_float(float x) { return x; }
__device__ __forceinline__ double tk_to_float(double x) { return x; }

__device__ __forceinline__ float tk_to_float(tk_bfloat16 x) {
    return __uint_as_float(static_cast<unsigned int>(x.bits) << 16);
}

// binary16 -> binary32, exact for every input (normals, subnormals, zeros, inf, NaN).
__device__ __forceinline__ float tk_to_float(tk_half x) {
    const unsigned int sign = (static_cast<unsigned int>(x.bits) & 0x8000u) << 16;
    const unsigned int exponent = (x.bits >> 10) & 0x1fu;
    const unsigned int mantissa = x.bits & 0x3ffu;
    if (exponent == 0x1fu) {  // inf or NaN
        return __uint_as_float(sign | 0x7f800000u | (mantissa << 13));
    }
    if (exponent == 0) {  // zero or subnormal: mantissa * 2^-24
        const float magnitude = static_cast<float>(mantissa) * 5.9604644775390625e-8f;
        return sign ? -magnitude : magnitude;
    }
    return __uint_as_float(sign | ((exponent + 112u) << 23) | (mantissa << 13));
}
