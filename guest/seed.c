/* spore seed guest, CPL3 part. Built freestanding (see build.sh). Runs with
 * interrupts off and IOPL 0: it talks to the monitor only through MMIO exits (a one-register
 * console at SERIAL_MMIO and a virtio-mmio device). It never halts: it "yields" by writing
 * QueueNotify, and the monitor keeps the vCPU stopped at that exit until it has queued the
 * next message on the rx queue (no interrupts are used; see README "## vm engine"). */
#include "abi.h"
typedef unsigned char u8; typedef unsigned short u16; typedef unsigned int u32; typedef unsigned long u64;

/* ---- libc bits gcc may emit calls to ---- */
void *memset(void *d, int c, u64 n) { u8 *p = d; while (n--) *p++ = (u8)c; return d; }
void *memcpy(void *d, const void *s, u64 n) { u8 *p = d; const u8 *q = s; while (n--) *p++ = *q++; return d; }

static void puts_(const char *s) { while (*s) *(volatile u32 *)SERIAL_MMIO = (u8)*s++; }

/* ---- virtio-mmio (version 2) ---- */
#define R(off) (*(volatile u32 *)(VIRTIO_MMIO_BASE + (off)))
struct desc { u64 addr; u32 len; u16 flags; u16 next; };
struct avail { u16 flags; u16 idx; u16 ring[VQ_SIZE]; u16 used_event; };
struct used_elem { u32 id; u32 len; };
struct used { u16 flags; u16 idx; struct used_elem ring[VQ_SIZE]; u16 avail_event; };
struct vq { struct desc desc[VQ_SIZE]; struct avail avail __attribute__((aligned(64))); struct used used __attribute__((aligned(64))); };

static struct vq rxq __attribute__((aligned(4096)));
static struct vq txq __attribute__((aligned(4096)));
static u8 rxbuf[VQ_SIZE][BUF_SIZE] __attribute__((aligned(4096)));
static u8 txbuf[VQ_SIZE][BUF_SIZE] __attribute__((aligned(4096)));
static u32 table[TABLE_WORDS] __attribute__((aligned(4096)));

/* state that every fork must re-initialize: PRNG and identity */
static u64 rng[2] = { 0x9e3779b97f4a7c15UL, 0xbf58476d1ce4e5b9UL };
static u64 instance_id;
static u64 served;
static u16 rx_last, tx_next;

static u64 rnd(void) { u64 s1 = rng[0], s0 = rng[1]; rng[0] = s0; s1 ^= s1 << 23; rng[1] = s1 ^ s0 ^ (s1 >> 17) ^ (s0 >> 26); return rng[1] + s0; }

static void fail(const char *why) { puts_("seed: "); puts_(why); puts_("\n"); for (;;) *(volatile u32 *)(VIRTIO_MMIO_BASE + 0x1f0) = 0xdead; }

static void setup_queue(u32 q, struct vq *v) {
  R(0x030) = q;
  if (R(0x034) < VQ_SIZE) fail("queue too small");
  R(0x038) = VQ_SIZE;
  u64 d = (u64)v->desc, a = (u64)&v->avail, u = (u64)&v->used;
  R(0x080) = (u32)d; R(0x084) = (u32)(d >> 32);
  R(0x090) = (u32)a; R(0x094) = (u32)(a >> 32);
  R(0x0a0) = (u32)u; R(0x0a4) = (u32)(u >> 32);
  R(0x044) = 1;
}

static void virtio_init(void) {
  if (R(0x000) != 0x74726976 || R(0x004) != 2 || R(0x008) != 3) fail("no virtio-mmio console");
  R(0x070) = 0; R(0x070) = 1; R(0x070) = 1 | 2;
  R(0x014) = 1; if (!(R(0x010) & 1)) fail("no VIRTIO_F_VERSION_1");
  R(0x024) = 1; R(0x020) = 1; R(0x024) = 0; R(0x020) = 0;
  R(0x070) = 1 | 2 | 8; if (!(R(0x070) & 8)) fail("features rejected");
  setup_queue(VQ_RX, &rxq); setup_queue(VQ_TX, &txq);
  R(0x070) = 1 | 2 | 8 | 4;
  for (u16 i = 0; i < VQ_SIZE; i++) {
    rxq.desc[i].addr = (u64)rxbuf[i]; rxq.desc[i].len = BUF_SIZE; rxq.desc[i].flags = 2; /* device-writable */
    rxq.avail.ring[i] = i;
    txq.desc[i].addr = (u64)txbuf[i];
  }
  rxq.avail.idx = VQ_SIZE;
}

/* queue one message on tx; the monitor reads it at the next yield */
static u8 *tx_begin(void) { return txbuf[tx_next % VQ_SIZE] + 8; }
static void tx_commit(u32 type, u32 len) {
  u16 i = tx_next % VQ_SIZE; u32 *h = (u32 *)txbuf[i];
  h[0] = type; h[1] = len;
  txq.desc[i].len = 8 + len; txq.desc[i].flags = 0;
  txq.avail.ring[txq.avail.idx % VQ_SIZE] = i;
  __asm__ volatile("" ::: "memory");
  txq.avail.idx++;
  tx_next++;
}

static void handle_request(const u8 *p, u32 len) {
  u8 *out = tx_begin();
  u64 *o = (u64 *)out;
  u32 op = len ? p[0] : OP_COMPUTE;
  switch (op) {
  case OP_POKE: case OP_PEEK: {
    u32 idx = *(const u32 *)(p + 4) % TABLE_WORDS;
    o[0] = table[idx];
    if (op == OP_POKE) table[idx] = *(const u32 *)(p + 8);
    o[1] = instance_id;
    tx_commit(MSG_RESPONSE, 16);
    return;
  }
  case OP_FAULT: __asm__ volatile("ud2"); break;
  case OP_SPIN: for (;;) __asm__ volatile("pause"); break;
  case OP_WILD_WRITE: *(volatile u32 *)0x20000000UL = 1; break;
  case OP_HLT: __asm__ volatile("hlt"); break;
  default: break;
  }
  /* compute: FNV-style hash of the request walked through the table */
  u64 h = 0xcbf29ce484222325UL;
  for (u32 i = 0; i < len; i++) { h ^= p[i]; h *= 0x100000001b3UL; h ^= table[h % TABLE_WORDS]; }
  served++;
  o[0] = h; o[1] = rnd(); o[2] = instance_id; o[3] = served;
  tx_commit(MSG_RESPONSE, 32);
}

void user_main(void) {
  puts_("seed: cpl3 up\n");
  /* the few-MB state a seed is worth keeping: 4 MiB table, initialized at CPL3 (native speed) */
  u64 x = 0x2545f4914f6cdd1dUL;
  for (u64 i = 0; i < TABLE_WORDS; i++) { x ^= x << 13; x ^= x >> 7; x ^= x << 17; table[i] = (u32)x; }
  virtio_init();
  puts_("seed: table ready, virtio up\n");
  tx_commit(MSG_READY, 0);
  for (;;) {
    /* yield: the monitor parks the vCPU at this MMIO exit until it has queued rx messages */
    R(0x050) = VQ_TX;
    __asm__ volatile("" ::: "memory");
    while (rxq.used.idx != rx_last) {
      struct used_elem e = rxq.used.ring[rx_last % VQ_SIZE];
      const u8 *b = rxbuf[e.id % VQ_SIZE];
      u32 type = ((const u32 *)b)[0], len = ((const u32 *)b)[1];
      if (len > e.len - 8 || e.len < 8) len = 0;
      if (type == MSG_ENTROPY && len >= 40) {
        const u64 *q = (const u64 *)(b + 8);
        rng[0] ^= q[0] ^ q[2]; rng[1] ^= q[1] ^ q[3]; if (!(rng[0] | rng[1])) rng[1] = 1;
        instance_id = q[4];
        served = 0;
      } else if (type == MSG_REQUEST) {
        handle_request(b + 8, len);
      }
      rxq.avail.ring[rxq.avail.idx % VQ_SIZE] = (u16)e.id;
      __asm__ volatile("" ::: "memory");
      rxq.avail.idx++;
      rx_last++;
    }
  }
}
