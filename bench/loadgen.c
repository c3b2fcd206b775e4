/*
 * Load generator for the PR helper protocol (bench/compare.ts builds and runs it).
 * N connections, each with one request outstanding (as QEMU does), each request a
 * PERSISTENT RESERVE IN READ KEYS carrying one fd by SCM_RIGHTS. Single-threaded epoll, so
 * the client costs far less than the helpers it measures. Prints one JSON line.
 *
 * usage: loadgen SOCKET CONNECTIONS REQUESTS WARMUP DEVICE
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

static void read_full(int fd, void *p, size_t n)
{
    size_t got = 0;
    while (got < n) {
        ssize_t r = read(fd, (char *)p + got, n - got);
        if (r <= 0) die("handshake read");
        got += r;
    }
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
    if (argc != 6) {
        fprintf(stderr, "usage: loadgen SOCKET CONNECTIONS REQUESTS WARMUP DEVICE\n");
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
    for (int i = 0; i < nconn; i++) {
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        strncpy(sa.sun_path, path, sizeof(sa.sun_path) - 1);
        int fd = socket(AF_UNIX, SOCK_STREAM, 0);
        if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) die("connect");
        unsigned char hs[4];
        read_full(fd, hs, 4);
        memset(hs, 0, 4);
        if (write(fd, hs, 4) != 4) die("handshake write");
        conns[i].fd = fd;
        struct epoll_event ev = { .events = EPOLLIN, .data.u32 = (uint32_t)i };
        epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev);
    }
    long sent = 0, done = 0, measured = 0;
    uint64_t t0 = 0;
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
    printf("{\"requests\":%ld,\"seconds\":%.6f,\"rps\":%.1f,\"p50_us\":%.1f,\"p99_us\":%.1f}\n",
           measured, elapsed / 1e9, measured / (elapsed / 1e9),
           lat[measured / 2] / 1e3, lat[(measured * 99) / 100] / 1e3);
    return 0;
}
