// An open-loop DNS load generator for bench/dns.ts (dnsperf's model: queries
// go out at a fixed rate whether or not answers came back), run inside a
// pod's namespace; compiled by the benchmark into a temporary directory.
//   dns-load SERVER NAME QPS SECONDS → one JSON line:
//   {"sent":…, "answered":…, "lost":…, "qps":…, "p50_ms":…, "p99_ms":…, "loop_p99_ms":…}
//
// C rather than Node: the Node generator's own event-loop delay (p99 ~2.5 ms)
// was as large as what it measured. One UDP socket; a sender thread sleeps to
// each query's due time (absolute CLOCK_MONOTONIC deadlines, 1 ns timer slack)
// and stamps it just before sendto; a receiver thread takes each answer's
// kernel receive time (SO_TIMESTAMPNS), so the latency is send to arrival at
// the socket, whatever this process was doing then. Both clocks are
// CLOCK_REALTIME. loop_p99_ms is how late the sender was on its schedule (p99).
// Queries not answered within 1 s after the last send are lost.
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define IDS 65536

static int sock;
static long long sent_at[IDS];  // realtime ns of the send of the query with this id, 0: none outstanding
static double *lat;             // answered latencies, ms
static long answered;
static volatile int sending = 1;

static long long ns_of(clockid_t c) {
  struct timespec ts;
  clock_gettime(c, &ts);
  return ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static int cmp(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

static void *receive(void *arg) {
  long capacity = (long)arg;
  long long quiet_until = 0;
  for (;;) {
    unsigned char buf[1500];
    char control[256];
    struct iovec iov = {buf, sizeof(buf)};
    struct msghdr msg = {0};
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control;
    msg.msg_controllen = sizeof(control);
    ssize_t got = recvmsg(sock, &msg, 0);
    if (got < 0) {
      if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR && errno != ECONNREFUSED) break;
      if (!sending) {
        if (quiet_until == 0) quiet_until = ns_of(CLOCK_MONOTONIC) + 1000000000LL;
        if (ns_of(CLOCK_MONOTONIC) >= quiet_until) break;
      }
      continue;
    }
    long long at = 0;
    for (struct cmsghdr *c = CMSG_FIRSTHDR(&msg); c; c = CMSG_NXTHDR(&msg, c)) {
      if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_TIMESTAMPNS) {
        struct timespec ts;
        memcpy(&ts, CMSG_DATA(c), sizeof(ts));
        at = ts.tv_sec * 1000000000LL + ts.tv_nsec;
      }
    }
    if (got < 2) continue;
    int id = buf[0] << 8 | buf[1];
    long long t0 = __atomic_exchange_n(&sent_at[id], 0, __ATOMIC_ACQ_REL);
    if (t0 == 0 || answered >= capacity) continue;
    if (at == 0) at = ns_of(CLOCK_REALTIME);
    lat[answered++] = (at - t0) / 1e6;
    if (!sending && quiet_until == 0) quiet_until = ns_of(CLOCK_MONOTONIC) + 1000000000LL;
  }
  return NULL;
}

int main(int argc, char **argv) {
  if (argc != 5 || atof(argv[3]) <= 0 || atof(argv[4]) <= 0) {
    fprintf(stderr, "usage: dns-load SERVER NAME QPS SECONDS\n");
    return 2;
  }
  double qps = atof(argv[3]), seconds = atof(argv[4]);
  long total = (long)(qps * seconds + 0.5);
  // The query: header (RD), one question NAME A IN, label by label.
  unsigned char q[300] = {0, 0, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0};
  size_t n = 12;
  for (const char *p = argv[2]; *p;) {
    const char *dot = strchr(p, '.');
    size_t len = dot ? (size_t)(dot - p) : strlen(p);
    if (len == 0 || len > 63 || n + len + 6 > sizeof(q)) {
      fprintf(stderr, "dns-load: bad name %s\n", argv[2]);
      return 2;
    }
    q[n++] = (unsigned char)len;
    memcpy(q + n, p, len);
    n += len;
    p += len + (dot ? 1 : 0);
  }
  q[n++] = 0;
  q[n++] = 0, q[n++] = 1, q[n++] = 0, q[n++] = 1;

  struct sockaddr_in dst = {.sin_family = AF_INET, .sin_port = htons(53)};
  if (inet_pton(AF_INET, argv[1], &dst.sin_addr) != 1) {
    fprintf(stderr, "dns-load: bad server %s\n", argv[1]);
    return 2;
  }
  sock = socket(AF_INET, SOCK_DGRAM, 0);
  int on = 1, rcvbuf = 4 << 20;
  struct timeval tick = {0, 100000};
  if (sock < 0 || setsockopt(sock, SOL_SOCKET, SO_TIMESTAMPNS, &on, sizeof(on)) != 0 || setsockopt(sock, SOL_SOCKET, SO_RCVTIMEO, &tick, sizeof(tick)) != 0 ||
      connect(sock, (struct sockaddr *)&dst, sizeof(dst)) != 0) {
    perror("dns-load: socket");
    return 1;
  }
  // As large as net.core.rmem_max allows: answers wait rather than drop.
  setsockopt(sock, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof(rcvbuf));
  prctl(PR_SET_TIMERSLACK, 1UL, 0, 0, 0);
  lat = calloc((size_t)total + 1, sizeof(double));
  double *late = calloc((size_t)total + 1, sizeof(double));
  if (!lat || !late) return 1;
  pthread_t rx;
  pthread_create(&rx, NULL, receive, (void *)(total + 1));

  long long start = ns_of(CLOCK_MONOTONIC);
  long sent = 0;
  for (long i = 0; i < total; i++) {
    long long due = start + (long long)(i * 1e9 / qps);
    struct timespec ts = {due / 1000000000LL, due % 1000000000LL};
    while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR) {
    }
    late[i] = (ns_of(CLOCK_MONOTONIC) - due) / 1e6;
    int id = (int)(i & 0xffff);
    q[0] = (unsigned char)(id >> 8), q[1] = (unsigned char)id;
    __atomic_store_n(&sent_at[id], ns_of(CLOCK_REALTIME), __ATOMIC_RELEASE);
    // A connected socket reports an earlier ICMP error on the next send (ECONNREFUSED): send again.
    ssize_t w = send(sock, q, n, 0);
    if (w < 0 && errno == ECONNREFUSED) w = send(sock, q, n, 0);
    if (w == (ssize_t)n) sent++;
    else __atomic_store_n(&sent_at[id], 0, __ATOMIC_RELEASE);
  }
  double elapsed = (ns_of(CLOCK_MONOTONIC) - start) / 1e9;
  sending = 0;
  pthread_join(rx, NULL);

  qsort(lat, (size_t)answered, sizeof(double), cmp);
  qsort(late, (size_t)total, sizeof(double), cmp);
#define PCT(a, count, p) ((count) > 0 ? (a)[(long)((p) / 100.0 * (count)) < (count) ? (long)((p) / 100.0 * (count)) : (count) - 1] : -1)
  printf("{\"sent\":%ld,\"answered\":%ld,\"lost\":%ld,\"qps\":%ld,\"p50_ms\":%.3f,\"p99_ms\":%.3f,\"loop_p99_ms\":%.3f}\n", sent, answered, sent - answered,
         (long)(answered / elapsed + 0.5), PCT(lat, answered, 50), PCT(lat, answered, 99), PCT(late, total, 99));
  return 0;
}
