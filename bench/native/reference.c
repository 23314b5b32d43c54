/*
 * Native reference for the benchmark: the same minimal work as three of the project's metrics, in
 * plain C, so `npm run bench` can print each figure next to what compiled code does on this machine.
 *
 *   walk.4level           a 4-level, 4K-granule stage 1 walk from the table base for every access,
 *                         over 64K mapped pages in 128 leaf tables, visited in a scrambled order
 *   translate_hit         a TLB hit: look up (ASID, page) among 1024 resident entries, check the
 *                         permission, form the output address; scrambled order
 *   pgtable.map_unmap_4k  map then unmap one 4K page through a 4-level table (tables present), with
 *                         the leaf written from prot bits and the unmapped range gathered
 *
 * Tables live in one flat "RAM" buffer indexed by physical address minus its base, as the kernel's
 * io-pgtable reaches them through the linear map. Each metric runs until at least 300 ms have passed
 * and prints `name value unit` on its own line.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define RAM_BASE 0x80000000ull
#define RAM_SIZE (64ull << 20)
#define PTE_VALID 1ull
#define PTE_TABLE 3ull
#define PTE_PAGE 3ull
#define PTE_AF (1ull << 10)
#define PTE_SH_IS (3ull << 8)
#define PTE_AP_RDONLY (1ull << 7)
#define PTE_ADDR_MASK 0x0000fffffffff000ull

static uint8_t *ram;
static uint64_t next_free = RAM_BASE;

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static uint64_t *pte_at(uint64_t pa) { return (uint64_t *)(ram + (pa - RAM_BASE)); }

static uint64_t alloc_table(void) {
  uint64_t pa = next_free;
  next_free += 4096;
  if (next_free > RAM_BASE + RAM_SIZE) { fprintf(stderr, "reference: out of RAM\n"); exit(1); }
  memset(pte_at(pa), 0, 4096);
  return pa;
}

static unsigned idx(uint64_t va, int lvl) { return (unsigned)(va >> (39 - 9 * lvl)) & 511; }

/* Map one 4K page, allocating tables on the way; returns 0, or -1 if the leaf is taken. */
static int map_4k(uint64_t pgd, uint64_t va, uint64_t pa, int readonly) {
  uint64_t table = pgd;
  for (int lvl = 0; lvl < 3; lvl++) {
    uint64_t *p = pte_at(table + idx(va, lvl) * 8);
    if (*p == 0) { uint64_t t = alloc_table(); *p = t | PTE_TABLE; }
    table = *p & PTE_ADDR_MASK;
  }
  uint64_t *leaf = pte_at(table + idx(va, 3) * 8);
  if (*leaf) return -1;
  *leaf = pa | PTE_PAGE | PTE_AF | PTE_SH_IS | (readonly ? PTE_AP_RDONLY : 0);
  return 0;
}

struct gather { uint64_t start, end; };

static uint64_t unmap_4k(uint64_t pgd, uint64_t va, struct gather *g) {
  uint64_t table = pgd;
  for (int lvl = 0; lvl < 3; lvl++) {
    uint64_t e = *pte_at(table + idx(va, lvl) * 8);
    if ((e & 3) != PTE_TABLE) return 0;
    table = e & PTE_ADDR_MASK;
  }
  uint64_t *leaf = pte_at(table + idx(va, 3) * 8);
  if (!*leaf) return 0;
  *leaf = 0;
  if (va < g->start) g->start = va;
  if (va + 4096 > g->end) g->end = va + 4096;
  return 4096;
}

static int walk(uint64_t pgd, uint64_t va, uint64_t *out) {
  uint64_t table = pgd;
  for (int lvl = 0; lvl < 4; lvl++) {
    uint64_t e = *pte_at(table + idx(va, lvl) * 8);
    if (!(e & PTE_VALID)) return -1;
    if (lvl == 3) { *out = (e & PTE_ADDR_MASK) | (va & 0xfff); return 0; }
    table = e & PTE_ADDR_MASK;
  }
  return -1;
}

/* Run body(n) with growing n until one run takes at least 300 ms; returns units per second. */
#define MEASURE(result, units_per_iter, body)                                   \
  do {                                                                          \
    long n_ = 1000;                                                             \
    for (;;) {                                                                  \
      double t0_ = now_s();                                                     \
      for (long it_ = 0; it_ < n_; it_++) { body; }                             \
      double dt_ = now_s() - t0_;                                               \
      if (dt_ >= 0.3) { result = (double)n_ * (units_per_iter) / dt_; break; } \
      n_ = dt_ < 0.001 ? n_ * 10 : (long)(n_ * 0.36 / dt_) + 1;                 \
    }                                                                           \
  } while (0)

static volatile uint64_t sink;

static void bench_walk(void) {
  enum { N = 65536 };
  uint64_t pgd = alloc_table();
  static uint64_t iovas[N];
  for (unsigned i = 0; i < N; i++) {
    uint64_t page = 0x7f0000000000ull + (uint64_t)(i >> 11) * 0x40200000ull + (uint64_t)(i & 2047) * 0x1000;
    map_4k(pgd, page, 0x100000000ull + (uint64_t)i * 0x1000, 0);
    iovas[i] = page + ((i * 97) & 0xfff);
  }
  unsigned k = 0;
  uint64_t acc = 0;
  double v;
  MEASURE(v, 1, {
    k = (k + 40503) & (N - 1);
    uint64_t pa;
    if (walk(pgd, iovas[k], &pa)) { fprintf(stderr, "reference: walk faulted\n"); exit(1); }
    acc += pa;
  });
  sink = acc;
  printf("walk.4level %.0f walks/s\n", v);
}

struct tlb_entry { uint64_t tag; uint64_t pa; uint32_t perm; uint32_t valid; };

static void bench_translate_hit(void) {
  enum { PAGES = 1024, SLOTS = 4096, ASID = 7 };
  static struct tlb_entry tlb[SLOTS];
  const uint64_t iova_base = 0x1000000000ull;
  for (unsigned i = 0; i < PAGES; i++) {
    uint64_t tag = ((uint64_t)ASID << 40) | ((iova_base >> 12) + i);
    unsigned h = (unsigned)((tag * 0x9e3779b97f4a7c15ull) >> 52) & (SLOTS - 1);
    while (tlb[h].valid) h = (h + 1) & (SLOTS - 1);
    tlb[h] = (struct tlb_entry){ tag, RAM_BASE + (uint64_t)(i & 255) * 4096, 3, 1 };
  }
  unsigned k = 0;
  uint64_t acc = 0;
  double v;
  MEASURE(v, 1, {
    k = (k + 389) & (PAGES - 1);
    uint64_t iova = iova_base + (uint64_t)k * 4096 + ((k * 8) & 0xfff);
    uint64_t tag = ((uint64_t)ASID << 40) | (iova >> 12);
    unsigned h = (unsigned)((tag * 0x9e3779b97f4a7c15ull) >> 52) & (SLOTS - 1);
    while (tlb[h].tag != tag) h = (h + 1) & (SLOTS - 1);
    if (!(tlb[h].perm & 2)) { fprintf(stderr, "reference: permission fault\n"); exit(1); }
    acc += tlb[h].pa | (iova & 0xfff);
  });
  sink = acc;
  printf("translate_hit %.0f transactions/s\n", v);
}

static void bench_map_unmap(void) {
  enum { N = 2048 };
  uint64_t pgd = alloc_table();
  static uint64_t iovas[N];
  struct gather g = { UINT64_MAX, 0 };
  for (unsigned i = 0; i < N; i++) {
    iovas[i] = 0x7f0000000000ull + (uint64_t)(i >> 6) * 0x40200000ull + (uint64_t)(i & 63) * 0x1000 * 7;
    map_4k(pgd, iovas[i], 0x100000000ull + (uint64_t)i * 0x1000, 0);
    unmap_4k(pgd, iovas[i], &g);
  }
  unsigned k = 0;
  double v;
  MEASURE(v, 1, {
    uint64_t iova = iovas[k];
    k = (k + 1) & (N - 1);
    map_4k(pgd, iova, 0x200000000ull + (uint64_t)k * 0x1000, 0);
    if (unmap_4k(pgd, iova, &g) != 4096) { fprintf(stderr, "reference: unmap failed\n"); exit(1); }
  });
  sink = g.start + g.end;
  printf("pgtable.map_unmap_4k %.0f pairs/s\n", v);
}

int main(void) {
  ram = aligned_alloc(4096, RAM_SIZE);
  if (!ram) { fprintf(stderr, "reference: no memory\n"); return 1; }
  bench_walk();
  bench_translate_hit();
  bench_map_unmap();
  return 0;
}
