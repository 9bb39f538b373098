/*
 * wsload - epoll-based WebSocket load generator for ws_bench.py: echo round trips, or broadcast fan-out.
 *
 * Build: gcc -O2 -o wsload wsload.c
 *
 * Echo (-d): wsload -p port [-h host] [-c conns] [-s bytes] -d seconds
 *   Each connection sends one masked text message of s bytes, waits until the same message came back (one
 *   unmasked text frame, checked byte for byte), and sends the next: one message in flight per connection.
 *   RESULT rps=... p50_us=... p99_us=... max_us=... errors=... cpu=...
 *
 * Broadcast (-b): wsload -p port [-h host] [-c clients] [-s bytes] -b rounds
 *   All clients connect and upgrade; then, `rounds` times, client 0 sends one message and every client (client 0
 *   included) must receive it within 10 s. Each round's times from the send to each client's receipt give its
 *   first, p50, p99 and last; the RESULT line has the medians over the rounds:
 *   RESULT last_us=... p50_us=... p99_us=... first_us=... errors=... cpu=... clients=... connect_s=...
 *
 * Both: the upgrade is checked (101 and the Sec-WebSocket-Accept of the fixed key); any frame that is not the
 * expected unmasked, final text frame, or a payload that differs, is an error. cpu is this process's CPU time
 * over the wall time of the measured phase (1.0 = one core): the figure that shows the generator is not the
 * bottleneck. The messages are lowercase ASCII, valid UTF-8 for every server.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define KEY "dGhlIHNhbXBsZSBub25jZQ=="    /* RFC 6455's sample key ... */
#define ACCEPT "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=" /* ... and its accept value */
#define BATCH 100                          /* upgrades in flight while connecting */
#define MAX_SIZE 65535
#define BROADCAST_TIMEOUT_NS 10000000000ULL

typedef struct {
    int fd, id, dead;
    uint64_t seq;          /* echo: the message in flight; broadcast: the round expected */
    uint64_t t_sent;       /* echo: when the message in flight was sent */
    uint8_t hdr[14];       /* the frame header being read */
    size_t hlen, hneed;    /* bytes of it read, bytes it has */
    uint64_t plen, ppos;   /* payload length and bytes of it read; ppos == plen + 1: reading a header */
    int bad;               /* the payload being read differs */
    char *wbuf;            /* the frame being sent */
    size_t wlen, woff;
    int want_out;
} conn_t;

static int nconn = 50, dur = 0, msize = 64, rounds = 0, epfd;
static const char *host = "127.0.0.1", *port = NULL;
static uint64_t stop_ns, messages;
static uint64_t err_connect, err_upgrade, err_io, err_closed, err_mismatch, err_protocol, err_timeout;
static uint32_t *lat;
static size_t nlat, caplat;
static conn_t *conns;
static uint64_t round_start; /* broadcast: when client 0 sent the current round's message */
static size_t round_got;     /* broadcast: clients that have the current round's message */

static uint64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ULL + ts.tv_nsec;
}

/* byte j of message seq of connection id: lowercase ASCII, so every text frame is valid UTF-8 */
static inline uint8_t pat(uint64_t id, uint64_t seq, uint64_t j) {
    return (uint8_t)('a' + (id * 7 + seq * 13 + j * 31 + (j >> 8)) % 26);
}

static void record(uint64_t t0, uint64_t t1) {
    if (nlat == caplat) {
        caplat = caplat ? caplat * 2 : 1 << 16;
        lat = realloc(lat, caplat * sizeof *lat);
        if (!lat) { perror("realloc"); exit(1); }
    }
    uint64_t d = t1 - t0;
    lat[nlat++] = d > UINT32_MAX ? UINT32_MAX : (uint32_t)d;
}

static void kill_conn(conn_t *c, uint64_t *counter) {
    if (c->dead) return;
    (*counter)++;
    c->dead = 1;
    epoll_ctl(epfd, EPOLL_CTL_DEL, c->fd, NULL);
    close(c->fd);
}

static void set_out(conn_t *c, int on) {
    if (c->want_out == on) return;
    struct epoll_event ev = { .events = EPOLLIN | (on ? EPOLLOUT : 0), .data.ptr = c };
    epoll_ctl(epfd, EPOLL_CTL_MOD, c->fd, &ev);
    c->want_out = on;
}

static void flush(conn_t *c) {
    while (c->woff < c->wlen) {
        ssize_t n = send(c->fd, c->wbuf + c->woff, c->wlen - c->woff, MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EAGAIN || errno == EINTR) { set_out(c, 1); return; }
            kill_conn(c, &err_io);
            return;
        }
        c->woff += n;
    }
    c->woff = c->wlen = 0;
    set_out(c, 0);
}

/* One masked, final text frame of msize bytes: pattern (id, seq). */
static void send_message(conn_t *c, uint64_t id, uint64_t seq) {
    uint8_t *p = (uint8_t *)c->wbuf;
    size_t h = 0;
    p[h++] = 0x81;
    if (msize < 126) {
        p[h++] = 0x80 | msize;
    } else {
        p[h++] = 0x80 | 126;
        p[h++] = msize >> 8;
        p[h++] = msize & 0xff;
    }
    uint8_t mask[4] = { (uint8_t)seq, (uint8_t)(seq >> 8), (uint8_t)c->id, 0x5a };
    memcpy(p + h, mask, 4);
    h += 4;
    for (size_t j = 0; j < (size_t)msize; j++) p[h + j] = pat(id, seq, j) ^ mask[j & 3];
    c->wlen = h + msize;
    c->woff = 0;
    flush(c);
}

static void message_received(conn_t *c, uint64_t t);

/* Feed bytes from the server into c's frame reader. */
static void feed(conn_t *c, const uint8_t *buf, size_t n, uint64_t t) {
    uint64_t id = dur ? (uint64_t)c->id : 0;
    size_t i = 0;
    while (i < n && !c->dead) {
        if (c->ppos > c->plen) { /* reading a header */
            c->hdr[c->hlen++] = buf[i++];
            if (c->hlen == 2) {
                uint8_t len7 = c->hdr[1] & 0x7f;
                c->hneed = 2 + (len7 == 126 ? 2 : len7 == 127 ? 8 : 0) + ((c->hdr[1] & 0x80) ? 4 : 0);
            }
            if (c->hlen < 2 || c->hlen < c->hneed) continue;
            /* Only an unmasked, final text frame of the message's size is expected. */
            uint8_t len7 = c->hdr[1] & 0x7f;
            uint64_t len = len7;
            if (len7 == 126) len = ((uint64_t)c->hdr[2] << 8) | c->hdr[3];
            if (len7 == 127) { len = 0; for (int k = 2; k < 10; k++) len = (len << 8) | c->hdr[k]; }
            if (c->hdr[0] != 0x81 || (c->hdr[1] & 0x80) || len != (uint64_t)msize) {
                if (err_protocol == 0)
                    fprintf(stderr, "wsload: unexpected frame: first byte 0x%02x, length %llu\n", c->hdr[0],
                            (unsigned long long)len);
                kill_conn(c, &err_protocol);
                return;
            }
            c->hlen = 0;
            c->plen = len;
            c->ppos = 0;
            c->bad = 0;
            continue;
        }
        size_t take = n - i;
        if (take > c->plen - c->ppos) take = c->plen - c->ppos;
        for (size_t j = 0; j < take; j++)
            if (buf[i + j] != pat(id, c->seq, c->ppos + j)) c->bad = 1;
        i += take;
        c->ppos += take;
        if (c->ppos == c->plen) {
            c->ppos = c->plen + 1;
            message_received(c, t);
        }
    }
}

static void message_received(conn_t *c, uint64_t t) {
    if (c->bad) err_mismatch++;
    if (dur) { /* echo: the next message, while the run lasts */
        if (!c->bad) { record(c->t_sent, t); messages++; }
        c->seq++;
        if (t < stop_ns) {
            c->t_sent = t;
            send_message(c, c->id, c->seq);
        }
        return;
    }
    if (!c->bad) record(round_start, t);
    c->seq++;
    round_got++;
}

static void on_readable(conn_t *c) {
    static uint8_t buf[65536];
    for (;;) {
        ssize_t n = recv(c->fd, buf, sizeof buf, 0);
        if (n < 0) {
            if (errno == EAGAIN || errno == EINTR) return;
            kill_conn(c, &err_io);
            return;
        }
        if (n == 0) { kill_conn(c, &err_closed); return; }
        feed(c, buf, (size_t)n, now_ns());
        /* A short read emptied the socket: epoll is level-triggered, so skip the recv that would say EAGAIN. */
        if (c->dead || (size_t)n < sizeof buf) return;
    }
}

/* Connect and upgrade every connection, BATCH at a time (blocking sockets, 10 s timeouts). */
static int connect_all(struct addrinfo *ai) {
    char request[512];
    int len = snprintf(request, sizeof request,
                       "GET / HTTP/1.1\r\nHost: %s:%s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                       "Sec-WebSocket-Key: " KEY "\r\nSec-WebSocket-Version: 13\r\n\r\n",
                       host, port);
    struct timeval tv = { .tv_sec = 10 };
    int alive = 0;
    for (int first = 0; first < nconn; first += BATCH) {
        int last = first + BATCH < nconn ? first + BATCH : nconn;
        for (int i = first; i < last; i++) {
            conn_t *c = &conns[i];
            c->id = i;
            c->ppos = 1; /* plen 0: reading a header */
            c->fd = socket(ai->ai_family, SOCK_STREAM, 0);
            if (c->fd >= 0) {
                setsockopt(c->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
                setsockopt(c->fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
            }
            if (c->fd < 0 || connect(c->fd, ai->ai_addr, ai->ai_addrlen) < 0
                || send(c->fd, request, len, MSG_NOSIGNAL) != len) {
                if (err_connect == 0) perror("wsload: connect");
                err_connect++;
                c->dead = 1;
                if (c->fd >= 0) close(c->fd);
            }
        }
        for (int i = first; i < last; i++) {
            conn_t *c = &conns[i];
            if (c->dead) continue;
            char answer[4096];
            size_t got = 0;
            char *end = NULL;
            while (!end && got < sizeof answer - 1) {
                ssize_t n = recv(c->fd, answer + got, sizeof answer - 1 - got, 0);
                if (n <= 0) break;
                got += n;
                answer[got] = 0;
                end = strstr(answer, "\r\n\r\n");
            }
            /* Nothing may follow the 101: the server speaks only when spoken to. */
            if (!end || strncmp(answer, "HTTP/1.1 101", 12) != 0 || !strstr(answer, ACCEPT)
                || end + 4 != answer + got) {
                if (err_upgrade == 0)
                    fprintf(stderr, "wsload: upgrade failed: %.200s\n", got ? answer : "(no answer)");
                err_upgrade++;
                c->dead = 1;
                close(c->fd);
                continue;
            }
            int one = 1;
            setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
            fcntl(c->fd, F_SETFL, fcntl(c->fd, F_GETFL) | O_NONBLOCK);
            c->wbuf = malloc(14 + msize);
            struct epoll_event ev = { .events = EPOLLIN, .data.ptr = c };
            epoll_ctl(epfd, EPOLL_CTL_ADD, c->fd, &ev);
            alive++;
        }
    }
    return alive;
}

/* Wait for events until `done` or the deadline; returns when either holds. */
static void poll_until(uint64_t deadline, int (*done)(void)) {
    struct epoll_event evs[512];
    uint64_t t;
    while (!done() && (t = now_ns()) < deadline) {
        int ms = (int)((deadline - t) / 1000000) + 1;
        int n = epoll_wait(epfd, evs, 512, ms < 50 ? ms : 50);
        for (int i = 0; i < n; i++) {
            conn_t *c = evs[i].data.ptr;
            if (c->dead) continue;
            if (evs[i].events & EPOLLOUT) flush(c);
            if (!c->dead && (evs[i].events & (EPOLLIN | EPOLLERR | EPOLLHUP))) on_readable(c);
        }
    }
}

static int never(void) { return 0; }
static size_t round_want;
static int round_done(void) { return round_got >= round_want; }

static int cmp_u32(const void *a, const void *b) {
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return x < y ? -1 : x > y;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double median(double *v, int n) {
    qsort(v, n, sizeof *v, cmp_double);
    return n ? v[n / 2] : 0;
}

static double cpu_since(struct rusage *ru0) {
    struct rusage ru1;
    getrusage(RUSAGE_SELF, &ru1);
    return (ru1.ru_utime.tv_sec - ru0->ru_utime.tv_sec) + (ru1.ru_utime.tv_usec - ru0->ru_utime.tv_usec) / 1e6
         + (ru1.ru_stime.tv_sec - ru0->ru_stime.tv_sec) + (ru1.ru_stime.tv_usec - ru0->ru_stime.tv_usec) / 1e6;
}

static uint64_t errors(void) {
    return err_connect + err_upgrade + err_io + err_closed + err_mismatch + err_protocol + err_timeout;
}

static void print_errors(void) {
    int dead = 0;
    for (int i = 0; i < nconn; i++) dead += conns[i].dead;
    printf("errors:       %llu (connect %llu, upgrade %llu, io %llu, closed %llu, mismatch %llu, protocol %llu, "
           "timeout %llu), dead connections %d\n",
           (unsigned long long)errors(), (unsigned long long)err_connect, (unsigned long long)err_upgrade,
           (unsigned long long)err_io, (unsigned long long)err_closed, (unsigned long long)err_mismatch,
           (unsigned long long)err_protocol, (unsigned long long)err_timeout, dead);
}

static int run_echo(void) {
    struct rusage ru0;
    getrusage(RUSAGE_SELF, &ru0);
    uint64_t start = now_ns();
    stop_ns = start + (uint64_t)dur * 1000000000ULL;
    for (int i = 0; i < nconn; i++) {
        conn_t *c = &conns[i];
        if (c->dead) continue;
        c->t_sent = start;
        send_message(c, c->id, c->seq);
    }
    poll_until(stop_ns, never);
    double wall = (now_ns() - start) / 1e9, cpu = cpu_since(&ru0) / wall;
    double p50 = 0, p99 = 0, mx = 0;
    if (nlat) {
        qsort(lat, nlat, sizeof *lat, cmp_u32);
        p50 = lat[(size_t)(nlat * 0.50)] / 1e3;
        p99 = lat[(size_t)(nlat * 0.99)] / 1e3;
        mx = lat[nlat - 1] / 1e3;
    }
    double rps = messages / wall;
    printf("target %s:%s, %d connections, %d-byte text messages, echo, %.2f s\n", host, port, nconn, msize, wall);
    printf("round trips/s: %.0f\n", rps);
    printf("latency us:   p50 %.1f  p99 %.1f  max %.1f\n", p50, p99, mx);
    print_errors();
    printf("loadgen cpu:  %.2f cores\n", cpu);
    printf("RESULT rps=%.0f p50_us=%.1f p99_us=%.1f max_us=%.1f errors=%llu cpu=%.2f\n", rps, p50, p99, mx,
           (unsigned long long)errors(), cpu);
    return 0;
}

static int run_broadcast(double connect_s) {
    double *last = calloc(rounds, sizeof *last), *first = calloc(rounds, sizeof *first);
    double *p50 = calloc(rounds, sizeof *p50), *p99 = calloc(rounds, sizeof *p99);
    struct rusage ru0;
    getrusage(RUSAGE_SELF, &ru0);
    uint64_t start = now_ns();
    size_t want = 0;
    for (int i = 0; i < nconn; i++) want += !conns[i].dead;
    for (int r = 0; r < rounds; r++) {
        if (conns[0].dead) { fprintf(stderr, "wsload: client 0 is gone\n"); err_timeout += want; break; }
        nlat = 0;
        round_got = 0;
        round_want = want;
        round_start = now_ns();
        send_message(&conns[0], 0, (uint64_t)r);
        poll_until(round_start + BROADCAST_TIMEOUT_NS, round_done);
        if (round_got < want) {
            fprintf(stderr, "wsload: round %d: %zu of %zu clients received the message\n", r, round_got, want);
            err_timeout += want - round_got;
            /* The clients still waiting now expect a message that will not come; stop them. */
            for (int i = 0; i < nconn; i++)
                if (!conns[i].dead && conns[i].seq == (uint64_t)r) kill_conn(&conns[i], &err_closed);
            want = round_got;
        }
        if (nlat) {
            qsort(lat, nlat, sizeof *lat, cmp_u32);
            first[r] = lat[0] / 1e3;
            p50[r] = lat[(size_t)(nlat * 0.50)] / 1e3;
            p99[r] = lat[(size_t)(nlat * 0.99)] / 1e3;
            last[r] = lat[nlat - 1] / 1e3;
        }
        printf("round %d: %zu clients, first %.0f us, p50 %.0f us, p99 %.0f us, last %.0f us\n", r, nlat, first[r],
               p50[r], p99[r], last[r]);
        fflush(stdout);
        /* A pause, so that the server's writes of this round are over before the next starts. */
        struct timespec pause = { .tv_nsec = 100000000 };
        nanosleep(&pause, NULL);
    }
    double wall = (now_ns() - start) / 1e9, cpu = cpu_since(&ru0) / wall;
    print_errors();
    printf("RESULT last_us=%.0f p50_us=%.0f p99_us=%.0f first_us=%.0f errors=%llu cpu=%.2f clients=%zu "
           "connect_s=%.2f\n",
           median(last, rounds), median(p50, rounds), median(p99, rounds), median(first, rounds),
           (unsigned long long)errors(), cpu, want, connect_s);
    return 0;
}

static void usage(void) {
    fprintf(stderr, "usage: wsload -p port [-h host] [-c conns] [-s bytes] (-d seconds | -b rounds)\n");
    exit(2);
}

int main(int argc, char **argv) {
    int o;
    while ((o = getopt(argc, argv, "h:p:c:d:s:b:")) != -1) {
        switch (o) {
        case 'h': host = optarg; break;
        case 'p': port = optarg; break;
        case 'c': nconn = atoi(optarg); break;
        case 'd': dur = atoi(optarg); break;
        case 's': msize = atoi(optarg); break;
        case 'b': rounds = atoi(optarg); break;
        default: usage();
        }
    }
    if (!port || nconn < 1 || msize < 1 || msize > MAX_SIZE || (dur > 0) == (rounds > 0) || dur < 0 || rounds < 0)
        usage();

    struct rlimit rl;
    getrlimit(RLIMIT_NOFILE, &rl);
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
    if (rl.rlim_cur < (rlim_t)nconn + 64) {
        fprintf(stderr, "wsload: open-files limit %llu is too low for %d connections\n",
                (unsigned long long)rl.rlim_cur, nconn);
        return 2;
    }
    struct addrinfo hints = { .ai_family = AF_INET, .ai_socktype = SOCK_STREAM };
    struct addrinfo *ai;
    if (getaddrinfo(host, port, &hints, &ai) != 0) { fprintf(stderr, "wsload: bad address\n"); return 2; }
    epfd = epoll_create1(0);
    conns = calloc(nconn, sizeof *conns);
    uint64_t t0 = now_ns();
    int alive = connect_all(ai);
    double connect_s = (now_ns() - t0) / 1e9;
    freeaddrinfo(ai);
    if (!alive) {
        fprintf(stderr, "wsload: no connection could be upgraded\n");
        return 1;
    }
    return dur ? run_echo() : run_broadcast(connect_s);
}
