/* The floor of Swoole's two modes in C, for echo_bench.py: what the design itself costs on this machine.
 *
 *   c_echo --port N --mode base      one process, one epoll loop: read, write back (Swoole's BASE)
 *   c_echo --port N --mode process [--workers W] [--reactors R] [--affinity 1]
 *                                    a master whose reactor threads own the connections and hand each package
 *                                    to a worker process (fd % W) over a SOCK_DGRAM socketpair, one datagram
 *                                    per package as Swoole does; the worker echoes it back the same way and
 *                                    the reactor thread writes it to the client (Swoole's PROCESS);
 *                                    --affinity 1 binds reactor thread i and worker i to the i-th usable CPU,
 *                                    as open_cpu_affinity does (pyswoole's Runtime.pin_cpu)
 *
 * No settings, counters, shared memory, timers or signals handling beyond SIGTERM: nothing but the syscalls and
 * wake-ups each mode needs per package. pyswoole's rows are compared with these to tell what Python costs from
 * what the process model costs. A datagram is the client's fd and generation (4 bytes each) and the data. A write the kernel cannot
 * take at once is kept and finished on EPOLLOUT (never the case for 64-byte echoes, but a floor must be
 * correct); a worker datagram the full pipe refuses waits in a queue for the same reason.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#define MAX_EVENTS 256
#define BUF 65536
#define MAX_FD 65536

typedef struct { char *data; size_t len; } pending_t;  /* bytes a client's socket has not taken yet */

static pending_t pending[MAX_FD];
/* A connection's generation, moved on at each accept and close of its fd: a worker's reply names the fd and the
 * generation it was read under (a session id, as Swoole's), so a reply that outlived its client is dropped
 * rather than written to the next connection given the same fd. Read across reactor threads: atomics. */
static unsigned generation[MAX_FD];
#define HDR 8 /* a datagram's header: the client's fd and its generation */
static int listen_fd = -1;

static void die(const char *what) { perror(what); exit(1); }

static void add(int ep, int fd, unsigned events) {
    struct epoll_event ev = {.events = events, .data.fd = fd};
    if (epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) < 0) die("epoll_ctl");
}

static void watch(int ep, int fd, unsigned events) {
    struct epoll_event ev = {.events = events, .data.fd = fd};
    epoll_ctl(ep, EPOLL_CTL_MOD, fd, &ev);
}

static void drop(int ep, int fd) {
    __atomic_add_fetch(&generation[fd], 1, __ATOMIC_RELEASE);
    epoll_ctl(ep, EPOLL_CTL_DEL, fd, NULL);
    free(pending[fd].data);
    pending[fd].data = NULL;
    pending[fd].len = 0;
    close(fd);
}

/* Write to a client, keeping what the socket does not take; false when the client is gone. */
static int client_write(int ep, int fd, const char *data, size_t len) {
    if (pending[fd].len) {  /* keep the order: behind what waits already */
        pending[fd].data = realloc(pending[fd].data, pending[fd].len + len);
        memcpy(pending[fd].data + pending[fd].len, data, len);
        pending[fd].len += len;
        return 1;
    }
    ssize_t n = send(fd, data, len, MSG_NOSIGNAL);
    if (n < 0) {
        if (errno != EAGAIN) return 0;
        n = 0;
    }
    if ((size_t)n < len) {
        pending[fd].data = malloc(len - n);
        memcpy(pending[fd].data, data + n, len - n);
        pending[fd].len = len - n;
        watch(ep, fd, EPOLLIN | EPOLLOUT);
    }
    return 1;
}

static int client_flush(int ep, int fd) {
    ssize_t n = send(fd, pending[fd].data, pending[fd].len, MSG_NOSIGNAL);
    if (n < 0) return errno == EAGAIN;
    memmove(pending[fd].data, pending[fd].data + n, pending[fd].len - n);
    pending[fd].len -= n;
    if (!pending[fd].len) watch(ep, fd, EPOLLIN);
    return 1;
}

static void accept_all(int ep) {
    for (;;) {
        int fd = accept4(listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) return;
        if (fd >= MAX_FD) { close(fd); continue; }
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        __atomic_add_fetch(&generation[fd], 1, __ATOMIC_RELEASE);
        add(ep, fd, EPOLLIN);
    }
}

/* BASE: one loop reads and writes back. */
static void run_base(void) {
    int ep = epoll_create1(0);
    add(ep, listen_fd, EPOLLIN);
    struct epoll_event events[MAX_EVENTS];
    static char buf[BUF];
    for (;;) {
        int n = epoll_wait(ep, events, MAX_EVENTS, -1);
        for (int i = 0; i < n; i++) {
            int fd = events[i].data.fd;
            if (fd == listen_fd) { accept_all(ep); continue; }
            if ((events[i].events & EPOLLOUT) && !client_flush(ep, fd)) { drop(ep, fd); continue; }
            if (!(events[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR))) continue;
            ssize_t got = recv(fd, buf, sizeof buf, 0);
            if (got <= 0) {
                if (got < 0 && errno == EAGAIN) continue;
                drop(ep, fd);
                continue;
            }
            if (!client_write(ep, fd, buf, got)) drop(ep, fd);
        }
    }
}

/* PROCESS: one SOCK_DGRAM socketpair between each reactor thread and each worker, as Swoole's pipes. */
#define MAX_PROCS 16
static int reactors = 1, workers = 1, affinity = 0;
static int reactor_end[MAX_PROCS][MAX_PROCS];  /* [reactor][worker]: the reactor thread's end, non-blocking */
static int worker_end[MAX_PROCS][MAX_PROCS];   /* [reactor][worker]: the worker's end */
static int pipe_of[MAX_FD];                    /* a reactor end's worker + 1; 0 for a client socket */

/* --affinity: bind the calling thread to the index-th CPU the process may use, modulo their number. */
static void pin_cpu(int index) {
    if (!affinity) return;
    cpu_set_t allowed, one;
    if (sched_getaffinity(0, sizeof allowed, &allowed) < 0) die("sched_getaffinity");
    int count = CPU_COUNT(&allowed), seen = 0;
    for (int cpu = 0; cpu < CPU_SETSIZE; cpu++) {
        if (!CPU_ISSET(cpu, &allowed) || seen++ != index % count) continue;
        CPU_ZERO(&one);
        CPU_SET(cpu, &one);
        if (sched_setaffinity(0, sizeof one, &one) < 0) die("sched_setaffinity");
        return;
    }
}

/* The worker: waits on its pipes, echoes every datagram back on the pipe it came from (blocking send: the
 * reactor threads never block, so they always drain). */
static void run_worker(int w) {
    pin_cpu(w);
    int ep = epoll_create1(0);
    for (int r = 0; r < reactors; r++) add(ep, worker_end[r][w], EPOLLIN);
    struct epoll_event events[MAX_PROCS];
    char *buf = malloc(BUF + HDR);
    for (;;) {
        int n = epoll_wait(ep, events, MAX_PROCS, -1);
        if (n < 0 && errno != EINTR) _exit(1);
        for (int i = 0; i < n; i++) {
            int fd = events[i].data.fd;
            ssize_t got;
            while ((got = recv(fd, buf, BUF + HDR, MSG_DONTWAIT)) > 0) {
                while (send(fd, buf, got, 0) < 0 && errno == EINTR) {
                }
            }
            if (got == 0) _exit(0);  /* the master is gone */
        }
    }
}

/* A reactor thread's datagrams that a full pipe refused, per worker, in order. */
typedef struct queued { struct queued *next; size_t len; char data[]; } queued_t;
typedef struct { int id, ep; queued_t *head[MAX_PROCS], *tail[MAX_PROCS]; char buf[BUF + HDR]; } reactor_t;

static void to_worker(reactor_t *self, int fd, size_t len) {
    int w = fd % workers, pipe_fd = reactor_end[self->id][w];  /* dispatch_mode 2: by fd */
    unsigned current = __atomic_load_n(&generation[fd], __ATOMIC_ACQUIRE);
    memcpy(self->buf, &fd, 4);  /* the data was read at buf + HDR */
    memcpy(self->buf + 4, &current, 4);
    if (!self->head[w] && send(pipe_fd, self->buf, len + HDR, 0) >= 0) return;
    queued_t *item = malloc(sizeof *item + len + HDR);
    item->next = NULL;
    item->len = len + HDR;
    memcpy(item->data, self->buf, len + HDR);
    if (self->tail[w]) self->tail[w]->next = item; else self->head[w] = item;
    self->tail[w] = item;
    watch(self->ep, pipe_fd, EPOLLIN | EPOLLOUT);
}

static void flush_to_worker(reactor_t *self, int w) {
    int pipe_fd = reactor_end[self->id][w];
    while (self->head[w]) {
        if (send(pipe_fd, self->head[w]->data, self->head[w]->len, 0) < 0) return;
        queued_t *done = self->head[w];
        self->head[w] = done->next;
        if (!self->head[w]) self->tail[w] = NULL;
        free(done);
    }
    watch(self->ep, pipe_fd, EPOLLIN);
}

static void *reactor_thread(void *arg) {
    reactor_t *self = arg;
    pin_cpu(self->id);
    int ep = self->ep = epoll_create1(0);
    add(ep, listen_fd, EPOLLIN | EPOLLEXCLUSIVE);
    for (int w = 0; w < workers; w++) add(ep, reactor_end[self->id][w], EPOLLIN);
    struct epoll_event events[MAX_EVENTS];
    char *buf = self->buf;
    for (;;) {
        int n = epoll_wait(ep, events, MAX_EVENTS, -1);
        for (int i = 0; i < n; i++) {
            int fd = events[i].data.fd;
            if (fd == listen_fd) { accept_all(ep); continue; }
            if (pipe_of[fd]) {
                if (events[i].events & EPOLLOUT) flush_to_worker(self, pipe_of[fd] - 1);
                if (!(events[i].events & EPOLLIN)) continue;
                ssize_t got;
                while ((got = recv(fd, buf, BUF + HDR, 0)) > HDR) {
                    int client;
                    unsigned sent_under;
                    memcpy(&client, buf, 4);
                    memcpy(&sent_under, buf + 4, 4);
                    /* The same generation: still the connection this reactor thread read it from (only the
                     * owner closes it, and any accept of the fd moves the generation on). */
                    if (client < 0 || client >= MAX_FD ||
                        __atomic_load_n(&generation[client], __ATOMIC_ACQUIRE) != sent_under)
                        continue;
                    if (!client_write(ep, client, buf + HDR, got - HDR)) drop(ep, client);
                }
                continue;
            }
            if ((events[i].events & EPOLLOUT) && !client_flush(ep, fd)) { drop(ep, fd); continue; }
            if (!(events[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR))) continue;
            ssize_t got = recv(fd, buf + HDR, BUF, 0);
            if (got <= 0) {
                if (got < 0 && errno == EAGAIN) continue;
                drop(ep, fd);
                continue;
            }
            to_worker(self, fd, got);
        }
    }
    return NULL;
}

/* Block (the master: sigwait takes them) or unblock (a worker, BASE) SIGTERM and SIGINT for the calling thread. */
static void stop_signals(int how) {
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    pthread_sigmask(how, &set, NULL);
}

static void run_process(void) {
    for (int r = 0; r < reactors; r++) {
        for (int w = 0; w < workers; w++) {
            int pair[2];
            if (socketpair(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0, pair) < 0) die("socketpair");
            reactor_end[r][w] = pair[0];
            worker_end[r][w] = pair[1];
            int on = 1;
            if (ioctl(pair[0], FIONBIO, &on) < 0) die("FIONBIO");  /* the reactor threads never block */
            pipe_of[pair[0]] = w + 1;
        }
    }
    pid_t children[MAX_PROCS];
    for (int w = 0; w < workers; w++) {
        children[w] = fork();
        if (children[w] < 0) die("fork");
        if (children[w] == 0) {
            close(listen_fd);
            stop_signals(SIG_UNBLOCK);  /* the worker ends on SIGTERM's default action */
            run_worker(w);
        }
    }
    pthread_t threads[MAX_PROCS];
    for (int r = 0; r < reactors; r++) {
        reactor_t *reactor = calloc(1, sizeof *reactor);
        reactor->id = r;
        if (pthread_create(&threads[r], NULL, reactor_thread, reactor)) die("pthread_create");
    }
    /* The master's own thread only waits for SIGTERM (the harness stops the whole process group). */
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    int sig;
    sigwait(&set, &sig);
    for (int w = 0; w < workers; w++) kill(children[w], SIGTERM);
    for (int w = 0; w < workers; w++) waitpid(children[w], NULL, 0);
    exit(0);
}

int main(int argc, char **argv) {
    int port = 0, process = 0;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--port")) port = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--mode")) process = !strcmp(argv[i + 1], "process");
        else if (!strcmp(argv[i], "--workers")) workers = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--reactors")) reactors = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--affinity")) affinity = atoi(argv[i + 1]);
        else port = 0;
    }
    if (!port || workers < 1 || workers > MAX_PROCS || reactors < 1 || reactors > MAX_PROCS) {
        fprintf(stderr, "usage: c_echo --port N [--mode base|process] [--workers W] [--reactors R] [--affinity 0|1] (1..16)\n");
        return 2;
    }
    stop_signals(SIG_BLOCK);  /* the reactor threads inherit the mask; only the master's sigwait takes them */
    listen_fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int one = 1;
    setsockopt(listen_fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in address = {.sin_family = AF_INET, .sin_port = htons(port), .sin_addr.s_addr = htonl(0x7f000001)};
    if (bind(listen_fd, (struct sockaddr *)&address, sizeof address) < 0) die("bind");
    if (listen(listen_fd, 1024) < 0) die("listen");
    if (process) run_process();
    stop_signals(SIG_UNBLOCK);  /* BASE: SIGTERM's default action ends the process */
    run_base();
    return 0;
}
