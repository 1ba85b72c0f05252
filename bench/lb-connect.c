/* lb-connect: times connect() to service VIPs, for bench/lb.ts.
 *
 *   lb-connect <listen-port> <iterations> <warmup>  < targets   (one "a.b.c.d port" per line)
 *
 * A thread listens on 0.0.0.0:<listen-port> (the local backend) and accepts
 * and closes. The main thread connects round-robin to the targets and times
 * only the connect() call with CLOCK_MONOTONIC: on a local backend that call
 * returns after the kernel has translated the destination (socket LB) or
 * walked the NAT rules (iptables) and completed the handshake, so the number
 * is the kernel path, not a runtime's. Sockets close with SO_LINGER 0 (RST) so
 * no TIME_WAIT piles up. Prints {"errors":..,"samples_us":[...]}, one sample
 * per timed connect, for the caller to pool across rounds.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static int listen_fd;

static void *acceptor(void *arg)
{
	(void)arg;
	for (;;) {
		int c = accept(listen_fd, NULL, NULL);
		if (c >= 0)
			close(c);
	}
	return NULL;
}

int main(int argc, char **argv)
{
	if (argc < 4) {
		fprintf(stderr, "usage: lb-connect <listen-port> <iterations> <warmup> < targets\n");
		return 2;
	}
	int port = atoi(argv[1]), iters = atoi(argv[2]), warm = atoi(argv[3]);
	struct sockaddr_in *t = NULL;
	int nt = 0, cap = 0;
	char ip[64];
	int tp;
	while (scanf("%63s %d", ip, &tp) == 2) {
		if (nt == cap) {
			cap = cap ? cap * 2 : 64;
			t = realloc(t, cap * sizeof(*t));
		}
		memset(&t[nt], 0, sizeof(*t));
		t[nt].sin_family = AF_INET;
		t[nt].sin_port = htons(tp);
		if (inet_pton(AF_INET, ip, &t[nt].sin_addr) != 1) {
			fprintf(stderr, "bad address %s\n", ip);
			return 2;
		}
		nt++;
	}
	if (nt == 0) {
		fprintf(stderr, "no targets\n");
		return 2;
	}

	listen_fd = socket(AF_INET, SOCK_STREAM, 0);
	int one = 1;
	setsockopt(listen_fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	struct sockaddr_in la = { .sin_family = AF_INET, .sin_port = htons(port) };
	if (bind(listen_fd, (struct sockaddr *)&la, sizeof(la)) < 0 || listen(listen_fd, 4096) < 0) {
		perror("listen");
		return 1;
	}
	pthread_t th;
	pthread_create(&th, NULL, acceptor, NULL);

	double *us = calloc(iters, sizeof(double));
	int n = 0, errors = 0;
	struct linger lg = { .l_onoff = 1, .l_linger = 0 };
	for (int i = 0; i < iters + warm; i++) {
		int s = socket(AF_INET, SOCK_STREAM, 0);
		setsockopt(s, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
		struct timespec a, b;
		clock_gettime(CLOCK_MONOTONIC, &a);
		int r = connect(s, (struct sockaddr *)&t[i % nt], sizeof(t[0]));
		clock_gettime(CLOCK_MONOTONIC, &b);
		close(s);
		if (r < 0) {
			if (errors++ < 3)
				fprintf(stderr, "connect: %s\n", strerror(errno));
			continue;
		}
		if (i >= warm)
			us[n++] = (b.tv_sec - a.tv_sec) * 1e6 + (b.tv_nsec - a.tv_nsec) / 1e3;
	}
	printf("{\"errors\":%d,\"samples_us\":[", errors);
	for (int i = 0; i < n; i++)
		printf(i ? ",%.2f" : "%.2f", us[i]);
	printf("]}\n");
	return 0;
}
