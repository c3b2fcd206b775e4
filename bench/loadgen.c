/*
 * Load generator for the PR helper protocol (bench/compare.ts builds and runs it).
 * N connections, each with one request outstanding (as QEMU does), each request a
 * PERSISTENT RESERVE IN READ KEYS carrying one fd by SCM_RIGHTS. Single-threaded epoll, so
 * the client costs far less than the helpers it measures. Prints one JSON line.
 *
 * usage: loadgen SOCKET CONNECTIONS REQUESTS WARMUP DEVICE [hold]
 *
 * All connections are opened at once, nonblocking: a connect refused because the listen
 * backlog is full (EAGAIN; the C helper listens with a backlog of 1) or not yet listening
 * (ECONNREFUSED) is tried again after a 0.1 ms sleep, and counted (connect_retries).
 * Handshakes are answered as they arrive, while the rest still connect.
 * The clock starts when WARMUP responses have arrived; with WARMUP 0, at the first request.
 * With "hold", the connections stay open after the JSON line until stdin reaches EOF (a
 * QEMU holds its connection for the VM's lifetime: the caller measures the helper then).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#define HEADER 104

struct conn {
    int fd;
    int ready;       /* handshake answered */
    size_t got;
    size_t need;
    uint64_t started;
    unsigned char buf[HEADER + 8192];
};

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + ts.tv_nsec;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static void die(const char *what)
{
    fprintf(stderr, "loadgen: %s: %s\n", what, strerror(errno));
    exit(2);
}

static void sleep_ns(long ns)
{
    struct timespec ts = { 0, ns };
    nanosleep(&ts, NULL);
}

/* A connected socket, or -1 when the connect should be tried again later. */
static int try_connect(const char *path)
{
    struct sockaddr_un sa = { .sun_family = AF_UNIX };
    strncpy(sa.sun_path, path, sizeof(sa.sun_path) - 1);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) die("socket");
    if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0) return fd;
    if (errno != EAGAIN && errno != ECONNREFUSED) die("connect");
    close(fd);
    return -1;
}

/*
 * Opens all connections and completes their handshakes (feature word in, 0 back).
 * Returns the number of connect attempts that had to be retried.
 */
static long open_all(const char *path, struct conn *conns, int nconn, int ep)
{
    long retries = 0;
    int next = 0, ready = 0;
    struct epoll_event evs[256];
    while (ready < nconn) {
        /* Connect in order; once one is refused, the rest would be too: sleep, then retry. */
        int refused = 0;
        while (next < nconn) {
            int fd = try_connect(path);
            if (fd < 0) {
                retries++;
                refused = 1;
                break;
            }
            conns[next].fd = fd;
            struct epoll_event ev = { .events = EPOLLIN, .data.u32 = (uint32_t)next };
            if (epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) < 0) die("epoll_ctl");
            next++;
        }
        int n = epoll_wait(ep, evs, 256, next < nconn ? 0 : 10000);
        if (n < 0 || (n == 0 && next == nconn)) die("epoll_wait (no handshake)");
        for (int k = 0; k < n; k++) {
            struct conn *c = &conns[evs[k].data.u32];
            if (c->ready) continue;
            ssize_t r = read(c->fd, c->buf + c->got, 4 - c->got);
            if (r < 0 && errno == EAGAIN) continue;
            if (r <= 0) die("handshake read");
            c->got += r;
            if (c->got < 4) continue;
            unsigned char zero[4] = { 0 };
            if (write(c->fd, zero, 4) != 4) die("handshake write");
            /* Blocking from here, as before: reads follow EPOLLIN, sends are 16 bytes. */
            fcntl(c->fd, F_SETFL, fcntl(c->fd, F_GETFL) & ~O_NONBLOCK);
            c->ready = 1;
            c->got = 0;
            ready++;
        }
        if (refused && n == 0) sleep_ns(100000);
    }
    return retries;
}

static void send_request(struct conn *c, int devfd)
{
    unsigned char cdb[16] = { 0x5e, 0x00 };   /* PERSISTENT RESERVE IN, READ KEYS */
    cdb[7] = 0x02;                             /* ALLOCATION LENGTH 512 */
    struct iovec iov = { cdb, sizeof(cdb) };
    union { char buf[CMSG_SPACE(sizeof(int))]; struct cmsghdr align; } ctl;
    struct msghdr msg = { 0 };
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    msg.msg_control = ctl.buf;
    msg.msg_controllen = sizeof(ctl.buf);
    struct cmsghdr *cm = CMSG_FIRSTHDR(&msg);
    cm->cmsg_level = SOL_SOCKET;
    cm->cmsg_type = SCM_RIGHTS;
    cm->cmsg_len = CMSG_LEN(sizeof(int));
    memcpy(CMSG_DATA(cm), &devfd, sizeof(int));
    c->started = now_ns();
    c->got = 0;
    c->need = HEADER;
    if (sendmsg(c->fd, &msg, MSG_NOSIGNAL) != sizeof(cdb)) die("sendmsg");
}

int main(int argc, char **argv)
{
    if (argc != 6 && !(argc == 7 && strcmp(argv[6], "hold") == 0)) {
        fprintf(stderr, "usage: loadgen SOCKET CONNECTIONS REQUESTS WARMUP DEVICE [hold]\n");
        return 2;
    }
    const char *path = argv[1];
    int nconn = atoi(argv[2]);
    long total = atol(argv[3]), warmup = atol(argv[4]);
    int devfd = open(argv[5], O_RDONLY);
    if (devfd < 0) die("open device");
    struct conn *conns = calloc(nconn, sizeof(*conns));
    uint64_t *lat = calloc(total, sizeof(uint64_t));
    int ep = epoll_create1(0);
    if (ep < 0) die("epoll_create1");
    uint64_t c0 = now_ns();
    long retries = open_all(path, conns, nconn, ep);
    uint64_t connect_ns = now_ns() - c0;
    long sent = 0, done = 0, measured = 0;
    uint64_t t0 = now_ns(); /* the first request's send, unless warming up */
    for (int i = 0; i < nconn && sent < warmup + total; i++, sent++) send_request(&conns[i], devfd);
    struct epoll_event evs[256];
    while (done < warmup + total) {
        int n = epoll_wait(ep, evs, 256, 10000);
        if (n <= 0) die("epoll_wait (helper stalled?)");
        for (int k = 0; k < n; k++) {
            struct conn *c = &conns[evs[k].data.u32];
            ssize_t r = read(c->fd, c->buf + c->got, c->need - c->got);
            if (r <= 0) die("read response");
            c->got += r;
            if (c->got == HEADER) {
                uint32_t sz;
                memcpy(&sz, c->buf + 4, 4);
                c->need += __builtin_bswap32(sz);
            }
            if (c->got < c->need) continue;
            done++;
            if (done == warmup) t0 = now_ns();
            if (done > warmup) lat[measured++] = now_ns() - c->started;
            if (sent < warmup + total) {
                send_request(c, devfd);
                sent++;
            }
        }
    }
    uint64_t elapsed = now_ns() - t0;
    qsort(lat, measured, sizeof(uint64_t), cmp_u64);
    printf("{\"requests\":%ld,\"seconds\":%.6f,\"rps\":%.1f,\"p50_us\":%.1f,\"p99_us\":%.1f,"
           "\"connect_retries\":%ld,\"connect_ms\":%.3f}\n",
           measured, elapsed / 1e9, measured / (elapsed / 1e9),
           lat[measured / 2] / 1e3, lat[(measured * 99) / 100] / 1e3,
           retries, connect_ns / 1e6);
    fflush(stdout);
    if (argc == 7) {
        char b[64];
        while (read(0, b, sizeof(b)) > 0) {
        }
    }
    return 0;
}
