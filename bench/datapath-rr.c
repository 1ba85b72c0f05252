// TCP_RR-style request/response loop for bench/datapath.ts: one connection,
// one-byte request, one-byte response, as many round trips as fit in the
// duration. Compiled by the benchmark into a temporary directory.
//   datapath-rr server PORT            (serves connections until killed)
//   datapath-rr client IP PORT SECONDS (prints "<round trips> <elapsed ns>")
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static long long now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static void *echo(void *arg) {
  int c = (int)(long)arg;
  char b;
  while (read(c, &b, 1) == 1)
    if (write(c, &b, 1) != 1) break;
  close(c);
  return NULL;
}

int main(int argc, char **argv) {
  if (argc >= 3 && strcmp(argv[1], "server") == 0) {
    int s = socket(AF_INET, SOCK_STREAM, 0), one = 1;
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(atoi(argv[2]))};
    setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (bind(s, (struct sockaddr *)&a, sizeof(a)) || listen(s, 16)) { perror("listen"); return 1; }
    printf("ready\n");
    fflush(stdout);
    for (;;) {
      int c = accept(s, NULL, NULL);
      if (c < 0) continue;
      setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
      pthread_t t;
      pthread_create(&t, NULL, echo, (void *)(long)c);
      pthread_detach(t);
    }
  }
  if (argc >= 5 && strcmp(argv[1], "client") == 0) {
    int s = socket(AF_INET, SOCK_STREAM, 0), one = 1;
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(atoi(argv[3]))};
    inet_pton(AF_INET, argv[2], &a.sin_addr);
    if (connect(s, (struct sockaddr *)&a, sizeof(a))) { perror("connect"); return 1; }
    setsockopt(s, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    long long start = now_ns(), end = start + (long long)(atof(argv[4]) * 1e9), n = 0, t = start;
    char b = 'x';
    while (t < end) {
      if (write(s, &b, 1) != 1 || read(s, &b, 1) != 1) { perror("rr"); return 1; }
      n++;
      if ((n & 63) == 0) t = now_ns();
    }
    printf("%lld %lld\n", n, now_ns() - start);
    return 0;
  }
  fprintf(stderr, "usage: datapath-rr server PORT | client IP PORT SECONDS\n");
  return 2;
}
