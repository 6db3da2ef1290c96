// outpost benchmark --type gpu: two measurements on the one CUDA device this process sees (the caller picks it
// with CUDA_VISIBLE_DEVICES=<GPU UUID>), printed as one JSON line.
//
//   copy:   cudaMemcpy device-to-device of a buffer of `copy_mib` MiB, repeated; the rate is bytes copied per second
//           (each byte is read once and written once, so the memory traffic is twice that).
//   matmul: C = A x B in FP32 for n x n matrices with a 32 x 32 shared-memory tiled kernel written here (not cuBLAS,
//           not tensor cores), repeated; the rate is 2 n^3 floating-point operations per run. Sixteen entries of C
//           are checked against a double-precision product on the host, and the largest relative error is printed.
//
// Usage: gpu-bench <copy_mib> <n> <repeats>. On any CUDA error it prints {"error": "..."} and exits 1.
#include <cuda_runtime.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#define TILE 32

static void fail(const char *what, cudaError_t error) {
  printf("{\"error\": \"%s: %s\"}\n", what, cudaGetErrorString(error));
  exit(1);
}

#define CHECK(call)                     \
  do {                                  \
    cudaError_t status_ = (call);       \
    if (status_ != cudaSuccess) fail(#call, status_); \
  } while (0)

__global__ void matmul(const float *a, const float *b, float *c, int n) {
  __shared__ float as[TILE][TILE];
  __shared__ float bs[TILE][TILE];
  int row = blockIdx.y * TILE + threadIdx.y;
  int col = blockIdx.x * TILE + threadIdx.x;
  float sum = 0.0f;
  for (int tile = 0; tile < (n + TILE - 1) / TILE; tile++) {
    int ac = tile * TILE + threadIdx.x;
    int br = tile * TILE + threadIdx.y;
    as[threadIdx.y][threadIdx.x] = (row < n && ac < n) ? a[(size_t)row * n + ac] : 0.0f;
    bs[threadIdx.y][threadIdx.x] = (br < n && col < n) ? b[(size_t)br * n + col] : 0.0f;
    __syncthreads();
    for (int k = 0; k < TILE; k++) sum += as[threadIdx.y][k] * bs[k][threadIdx.x];
    __syncthreads();
  }
  if (row < n && col < n) c[(size_t)row * n + col] = sum;
}

static float elapsed_ms(cudaEvent_t start, cudaEvent_t stop) {
  float ms = 0.0f;
  CHECK(cudaEventElapsedTime(&ms, start, stop));
  return ms;
}

// Values in [-1, 1) from a fixed linear congruential sequence: the same matrices on every machine.
static float value(unsigned long long *state) {
  *state = *state * 6364136223846793005ULL + 1442695040888963407ULL;
  return (float)((*state >> 40) & 0xFFFFFF) / 8388608.0f - 1.0f;
}

int main(int argc, char **argv) {
  if (argc != 4) {
    printf("{\"error\": \"usage: gpu-bench <copy_mib> <n> <repeats>\"}\n");
    return 2;
  }
  size_t copy_bytes = (size_t)atol(argv[1]) * 1024 * 1024;
  int n = atoi(argv[2]);
  int repeats = atoi(argv[3]);
  if (copy_bytes == 0 || n < TILE || repeats < 1) {
    printf("{\"error\": \"copy_mib, n (at least 32) and repeats must be positive\"}\n");
    return 2;
  }

  cudaDeviceProp prop;
  CHECK(cudaGetDeviceProperties(&prop, 0));
  cudaEvent_t start, stop;
  CHECK(cudaEventCreate(&start));
  CHECK(cudaEventCreate(&stop));

  // Device-to-device copy.
  void *source, *target;
  CHECK(cudaMalloc(&source, copy_bytes));
  CHECK(cudaMalloc(&target, copy_bytes));
  CHECK(cudaMemset(source, 1, copy_bytes));
  CHECK(cudaMemcpy(target, source, copy_bytes, cudaMemcpyDeviceToDevice));
  CHECK(cudaDeviceSynchronize());
  CHECK(cudaEventRecord(start));
  for (int i = 0; i < repeats; i++) CHECK(cudaMemcpy(target, source, copy_bytes, cudaMemcpyDeviceToDevice));
  CHECK(cudaEventRecord(stop));
  CHECK(cudaEventSynchronize(stop));
  double copy_seconds = elapsed_ms(start, stop) / 1000.0;
  CHECK(cudaFree(source));
  CHECK(cudaFree(target));

  // FP32 matrix multiply.
  size_t count = (size_t)n * n;
  float *a = (float *)malloc(count * sizeof(float));
  float *b = (float *)malloc(count * sizeof(float));
  float *c = (float *)malloc(count * sizeof(float));
  if (!a || !b || !c) {
    printf("{\"error\": \"host memory for %d x %d matrices\"}\n", n, n);
    return 1;
  }
  unsigned long long state = 42;
  for (size_t i = 0; i < count; i++) a[i] = value(&state);
  for (size_t i = 0; i < count; i++) b[i] = value(&state);
  float *da, *db, *dc;
  CHECK(cudaMalloc(&da, count * sizeof(float)));
  CHECK(cudaMalloc(&db, count * sizeof(float)));
  CHECK(cudaMalloc(&dc, count * sizeof(float)));
  CHECK(cudaMemcpy(da, a, count * sizeof(float), cudaMemcpyHostToDevice));
  CHECK(cudaMemcpy(db, b, count * sizeof(float), cudaMemcpyHostToDevice));
  dim3 block(TILE, TILE);
  dim3 grid((n + TILE - 1) / TILE, (n + TILE - 1) / TILE);
  matmul<<<grid, block>>>(da, db, dc, n);
  CHECK(cudaGetLastError());
  CHECK(cudaDeviceSynchronize());
  CHECK(cudaEventRecord(start));
  for (int i = 0; i < repeats; i++) matmul<<<grid, block>>>(da, db, dc, n);
  CHECK(cudaGetLastError());
  CHECK(cudaEventRecord(stop));
  CHECK(cudaEventSynchronize(stop));
  double matmul_seconds = elapsed_ms(start, stop) / 1000.0;
  CHECK(cudaMemcpy(c, dc, count * sizeof(float), cudaMemcpyDeviceToHost));

  double max_error = 0.0;
  for (int sample = 0; sample < 16; sample++) {
    int row = (int)(((long long)sample * 7919) % n);
    int col = (int)(((long long)sample * 104729) % n);
    double exact = 0.0;
    for (int k = 0; k < n; k++) exact += (double)a[(size_t)row * n + k] * (double)b[(size_t)k * n + col];
    double error = fabs((double)c[(size_t)row * n + col] - exact) / fmax(fabs(exact), 1.0);
    if (error > max_error) max_error = error;
  }

  double bytes = (double)copy_bytes * repeats;
  double flops = 2.0 * (double)n * n * n * repeats;
  printf(
      "{\"device_name\": \"%s\", \"copy_bytes\": %.0f, \"copy_seconds\": %.6f, \"copy_gib_per_second\": %.3f, "
      "\"matmul_n\": %d, \"repeats\": %d, \"matmul_seconds\": %.6f, \"matmul_gflops\": %.3f, "
      "\"matmul_max_relative_error\": %.3e}\n",
      prop.name, bytes, copy_seconds, bytes / copy_seconds / (1024.0 * 1024.0 * 1024.0), n, repeats, matmul_seconds,
      flops / matmul_seconds / 1e9, max_error);
  return 0;
}
