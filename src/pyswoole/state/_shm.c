/*
 * _shm: the machinery under pyswoole's Table, Atomic, AtomicLong and Lock (the Python classes in table.py,
 * atomic.py and lock.py add the rules of the server's life cycle and the documentation).
 *
 * Every object owns one anonymous MAP_SHARED mapping made when it is created (a Table: at create()). The processes
 * of a server are forks of the process that made it, so they all see the same bytes; nothing is pickled, and every
 * operation is one C call that touches only that memory.
 *
 * Locks, and why a dead holder cannot wedge the others. Every exclusive lock here (a Table's bucket locks, and
 * Lock's MUTEX, SEM and SPINLOCK) is one 32-bit word holding the pid of the process that holds it (0: free), with
 * bit 31 set while other processes sleep on it (pids are below 2^22 on Linux). Taking it is one compare-and-swap;
 * a waiter spins briefly, then sleeps on the word with futex(2) (a SPINLOCK's waiter spins and yields instead) for
 * at most CHECK_INTERVAL_NS at a time. Whenever a whole interval passes with the same holder, the waiter asks
 * whether that process still exists (kill(pid, 0), and /proc/<pid>/stat for a zombie nobody has reaped yet); if
 * it does not, the waiter takes the lock over with one compare-and-swap from the dead holder's word to its own, so
 * exactly one waiter wins. A holder killed by SIGKILL therefore delays the others by about one or two intervals.
 * A trylock that fails asks kill() at once (not /proc: it may be called in a loop). RWLOCK keeps its writer's pid
 * the same way and one slot per read hold (RW_READER_SLOTS of them) with the reader's pid, so dead readers are
 * found as well; its waiters sleep on a sequence number that every release bumps. A holder that is alive but
 * stopped (SIGSTOP, a debugger) is waited for.
 *
 * Invariants: no Python code runs and no Python object is made while a Table bucket lock is held (values are
 * converted before taking it and copied out before building the result), so a lock is never held across a
 * garbage collection or a signal handler; and a row becomes visible (active flag, link into its bucket's chain)
 * only after its key and values are written, so a process killed in the middle of an insert leaves the chains
 * intact (it can leave one conflict row unused, or the row it was updating with some columns old and some new).
 *
 * Limits of the liveness check: ownership is per process, not per thread; a pid reused by a new process within
 * the interval after its previous owner died would be taken for the holder (Linux hands pids out in increasing
 * order, so this needs pid_max wraparound in that window).
 */

#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/futex.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#define CHECK_INTERVAL_NS 20000000LL /* 20 ms between two liveness checks of a lock's holder */
#define WAITERS 0x80000000u
#define OWNER(word) ((word) & ~WAITERS)
#define ROW_SPINS 200
#define RW_READER_SLOTS 64

#define KEY_MAX 63
#define TABLE_MIN_SIZE_SHIFT 6
#define TABLE_MAX_SIZE 0x80000000u
#define TABLE_MIN_CONFLICT 0.2
#define TABLE_MAX_CONFLICT 1.0
#define TYPE_INT 1
#define TYPE_FLOAT 2
#define TYPE_STRING 3

#define LOCK_RWLOCK 1
#define LOCK_MUTEX 3
#define LOCK_SEM 4
#define LOCK_SPINLOCK 5

#define LIKELY(x) __builtin_expect(!!(x), 1)
#define UNLIKELY(x) __builtin_expect(!!(x), 0)

static PyObject *ServerError; /* pyswoole.errors.ServerError */
static PyObject *logger;      /* pyswoole.log.logger */

/* This process's pid, refreshed in every child by a fork handler: getpid() is a system call. */
static uint32_t self_pid;

static void refresh_pid(void) { self_pid = (uint32_t)getpid(); }

/* ------------------------------------------------------------------------------------------------------------ */
/* Time, futexes, liveness                                                                                      */
/* ------------------------------------------------------------------------------------------------------------ */

static int64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

/* Sleeps while *addr == expected, at most timeout_ns. 0 when woken, else ETIMEDOUT, EAGAIN or EINTR. */
static int futex_wait(uint32_t *addr, uint32_t expected, int64_t timeout_ns) {
    struct timespec ts = {(time_t)(timeout_ns / 1000000000LL), (long)(timeout_ns % 1000000000LL)};
    /* Not FUTEX_PRIVATE_FLAG: the word is shared between processes. */
    if (syscall(SYS_futex, addr, FUTEX_WAIT, expected, &ts, NULL, 0) == 0) {
        return 0;
    }
    return errno;
}

static void futex_wake(uint32_t *addr, int n) { syscall(SYS_futex, addr, FUTEX_WAKE, n, NULL, NULL, 0); }

static inline void cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield");
#endif
}

/* True when no live process has this pid: it does not exist or, when zombies is set, it is a zombie (kill()
 * still succeeds on those until the parent reaps them, which a parent blocked on the same lock would never do).
 * Waits look for zombies, at most once per interval; trylock, which may be called in a loop, only asks kill(). */
static int process_is_dead(uint32_t pid, int zombies) {
    if (pid == 0 || pid == self_pid) {
        return 0;
    }
    if (kill((pid_t)pid, 0) < 0 && errno == ESRCH) {
        return 1;
    }
    if (!zombies) {
        return 0;
    }
    char path[32], buf[512];
    snprintf(path, sizeof(path), "/proc/%u/stat", pid);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        return errno == ENOENT;
    }
    ssize_t n = read(fd, buf, sizeof(buf) - 1);
    close(fd);
    if (n <= 0) {
        return 0;
    }
    buf[n] = '\0';
    /* "pid (comm) S ...": comm may hold spaces and parentheses, so the state follows the last ')'. */
    char *end = strrchr(buf, ')');
    if (end == NULL || end[1] != ' ') {
        return 0;
    }
    return end[2] == 'Z' || end[2] == 'X';
}

/* Says in the pyswoole log that a lock was taken over from a dead process. Called with the GIL, no lock held. */
static void warn_taken_over(const char *what, uint32_t dead_pid) {
    PyObject *type, *value, *traceback;
    PyErr_Fetch(&type, &value, &traceback);
    PyObject *message = PyUnicode_FromFormat("%s was held by process %u, which is gone: lock taken over", what,
                                             (unsigned int)dead_pid);
    if (message != NULL) {
        PyObject *result = PyObject_CallMethod(logger, "warning", "O", message);
        Py_XDECREF(result);
        Py_DECREF(message);
    }
    if (PyErr_Occurred()) {
        PyErr_WriteUnraisable(logger);
    }
    PyErr_Restore(type, value, traceback);
}

/* ------------------------------------------------------------------------------------------------------------ */
/* The pid lock word                                                                                            */
/* ------------------------------------------------------------------------------------------------------------ */

enum { GOT, AGAIN };

typedef struct {
    int have_writer;   /* RWLOCK: the writer word is ours, readers are still draining */
    uint32_t dead_pid; /* a dead holder whose lock this wait took over or cleared, 0 if none */
} wait_state;

static inline int plock_try(uint32_t *word) {
    uint32_t expected = 0;
    return __atomic_compare_exchange_n(word, &expected, self_pid, 0, __ATOMIC_ACQUIRE, __ATOMIC_RELAXED);
}

static inline void plock_release(uint32_t *word) {
    if (__atomic_exchange_n(word, 0, __ATOMIC_RELEASE) & WAITERS) {
        futex_wake(word, 1);
    }
}

/* Takes the word from a dead holder, if it still holds it; for trylock, which waits for nothing. */
static int plock_take_from_dead(uint32_t *word, wait_state *ws) {
    uint32_t seen = __atomic_load_n(word, __ATOMIC_RELAXED);
    if (seen != 0 && process_is_dead(OWNER(seen), 0) &&
        __atomic_compare_exchange_n(word, &seen, self_pid | (seen & WAITERS), 0, __ATOMIC_ACQUIRE,
                                    __ATOMIC_RELAXED)) {
        ws->dead_pid = OWNER(seen);
        return 1;
    }
    return 0;
}

/* One round of waiting for a held lock word, at most slice_ns: GOT when it is now ours, AGAIN otherwise.
 * Sleeps on the futex (sleeps=1) or spins and yields (SPINLOCK). Runs without the GIL. */
static int plock_wait_once(uint32_t *word, int64_t slice_ns, int sleeps, wait_state *ws) {
    /* Once waiting has begun, the lock is taken with the waiters bit: others may be asleep behind us. */
    const uint32_t mine = sleeps ? (self_pid | WAITERS) : self_pid;
    uint32_t seen = __atomic_load_n(word, __ATOMIC_RELAXED);
    if (seen == 0) {
        return __atomic_compare_exchange_n(word, &seen, mine, 0, __ATOMIC_ACQUIRE, __ATOMIC_RELAXED) ? GOT : AGAIN;
    }
    int timed_out = 0;
    if (sleeps) {
        if (!(seen & WAITERS)) {
            if (!__atomic_compare_exchange_n(word, &seen, seen | WAITERS, 0, __ATOMIC_RELAXED, __ATOMIC_RELAXED)) {
                return AGAIN;
            }
            seen |= WAITERS;
        }
        timed_out = futex_wait(word, seen, slice_ns) == ETIMEDOUT;
    } else {
        int64_t end = now_ns() + slice_ns;
        for (unsigned int i = 1; __atomic_load_n(word, __ATOMIC_RELAXED) == seen; i++) {
            cpu_relax();
            if (i % 64 == 0) {
                sched_yield();
                if (now_ns() >= end) {
                    timed_out = 1;
                    break;
                }
            }
        }
    }
    if (timed_out && __atomic_load_n(word, __ATOMIC_RELAXED) == seen && process_is_dead(OWNER(seen), 1) &&
        __atomic_compare_exchange_n(word, &seen, mine, 0, __ATOMIC_ACQUIRE, __ATOMIC_RELAXED)) {
        ws->dead_pid = OWNER(seen);
        return GOT;
    }
    return AGAIN;
}

/* ------------------------------------------------------------------------------------------------------------ */
/* Arguments                                                                                                    */
/* ------------------------------------------------------------------------------------------------------------ */

/* Fills out[0..nmax) from the positional and keyword arguments of a METH_FASTCALL|METH_KEYWORDS call; absent
 * optional ones are NULL. */
static int parse_args(const char *fname, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames,
                      const char *const *names, Py_ssize_t nrequired, Py_ssize_t nmax, PyObject **out) {
    if (nargs > nmax) {
        PyErr_Format(PyExc_TypeError, "%s() takes at most %zd arguments (%zd given)", fname, nmax, nargs);
        return -1;
    }
    for (Py_ssize_t i = 0; i < nmax; i++) {
        out[i] = i < nargs ? args[i] : NULL;
    }
    Py_ssize_t nkw = kwnames == NULL ? 0 : PyTuple_GET_SIZE(kwnames);
    for (Py_ssize_t k = 0; k < nkw; k++) {
        PyObject *name = PyTuple_GET_ITEM(kwnames, k);
        Py_ssize_t j = 0;
        while (j < nmax && PyUnicode_CompareWithASCIIString(name, names[j]) != 0) {
            j++;
        }
        if (j == nmax) {
            PyErr_Format(PyExc_TypeError, "%s() got an unexpected keyword argument '%U'", fname, name);
            return -1;
        }
        if (out[j] != NULL) {
            PyErr_Format(PyExc_TypeError, "%s() got multiple values for argument '%s'", fname, names[j]);
            return -1;
        }
        out[j] = args[nargs + k];
    }
    for (Py_ssize_t i = 0; i < nrequired; i++) {
        if (out[i] == NULL) {
            PyErr_Format(PyExc_TypeError, "%s() missing required argument '%s'", fname, names[i]);
            return -1;
        }
    }
    return 0;
}

/* A timeout in seconds (None or a negative number: no limit) as an absolute deadline in ns, or -1 for none. */
static int parse_deadline(PyObject *timeout, double fallback, int64_t *deadline) {
    double seconds = fallback;
    if (timeout != NULL && timeout != Py_None) {
        seconds = PyFloat_AsDouble(timeout);
        if (seconds == -1.0 && PyErr_Occurred()) {
            return -1;
        }
        if (seconds != seconds) {
            PyErr_SetString(PyExc_ValueError, "timeout must be a number of seconds, not NaN");
            return -1;
        }
    } else if (timeout == Py_None) {
        seconds = -1.0;
    }
    *deadline = seconds < 0 ? -1 : now_ns() + (seconds > 1e9 ? (int64_t)1e18 : (int64_t)(seconds * 1e9));
    return 0;
}

static void *shared_alloc(size_t size) {
    void *memory = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (memory == MAP_FAILED) {
        PyErr_SetFromErrno(PyExc_OSError);
        return NULL;
    }
    return memory;
}

#define PAGE 4096

/* ------------------------------------------------------------------------------------------------------------ */
/* Atomic (uint32) and AtomicLong (int64)                                                                       */
/* ------------------------------------------------------------------------------------------------------------ */

typedef struct {
    PyObject_HEAD
    uint32_t *value;
} AtomicObject;

typedef struct {
    PyObject_HEAD
    int64_t *value;
} AtomicLongObject;

static int as_uint32(PyObject *obj, const char *what, uint32_t *out) {
    if (!PyLong_Check(obj)) {
        PyErr_Format(PyExc_ValueError, "%s must be an int, not %.100s", what, Py_TYPE(obj)->tp_name);
        return -1;
    }
    int overflow;
    long long v = PyLong_AsLongLongAndOverflow(obj, &overflow);
    if (v == -1 && PyErr_Occurred()) {
        return -1;
    }
    if (overflow || v < 0 || v > (long long)UINT32_MAX) {
        PyErr_Format(PyExc_ValueError, "%s must be in [0, 2**32), got %R", what, obj);
        return -1;
    }
    *out = (uint32_t)v;
    return 0;
}

static int as_int64(PyObject *obj, const char *what, int64_t *out) {
    if (!PyLong_Check(obj)) {
        PyErr_Format(PyExc_ValueError, "%s must be an int, not %.100s", what, Py_TYPE(obj)->tp_name);
        return -1;
    }
    int overflow;
    long long v = PyLong_AsLongLongAndOverflow(obj, &overflow);
    if (v == -1 && PyErr_Occurred()) {
        return -1;
    }
    if (overflow) {
        PyErr_Format(PyExc_ValueError, "%s must fit in 64 signed bits, got %R", what, obj);
        return -1;
    }
    *out = (int64_t)v;
    return 0;
}

static PyObject *Atomic_new(PyTypeObject *type, PyObject *args, PyObject *kwargs) {
    static char *kwlist[] = {"value", NULL};
    PyObject *initial = NULL;
    uint32_t value = 0;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "|O:Atomic", kwlist, &initial)) {
        return NULL;
    }
    if (initial != NULL && as_uint32(initial, "value", &value) < 0) {
        return NULL;
    }
    uint32_t *memory = shared_alloc(PAGE);
    if (memory == NULL) {
        return NULL;
    }
    AtomicObject *self = (AtomicObject *)type->tp_alloc(type, 0);
    if (self == NULL) {
        munmap(memory, PAGE);
        return NULL;
    }
    self->value = memory;
    *memory = value;
    return (PyObject *)self;
}

static void Atomic_dealloc(AtomicObject *self) {
    if (self->value != NULL) {
        munmap(self->value, PAGE); /* this process's mapping only: the others keep theirs */
    }
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyObject *Atomic_add_sub(AtomicObject *self, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames,
                                const char *fname, int negate) {
    static const char *const names[] = {"n"};
    PyObject *a[1];
    uint32_t n = 1;
    if (parse_args(fname, args, nargs, kwnames, names, 0, 1, a) < 0 || (a[0] && as_uint32(a[0], "n", &n) < 0)) {
        return NULL;
    }
    uint32_t result = negate ? __atomic_sub_fetch(self->value, n, __ATOMIC_SEQ_CST)
                             : __atomic_add_fetch(self->value, n, __ATOMIC_SEQ_CST);
    return PyLong_FromUnsignedLong(result);
}

static PyObject *Atomic_add(AtomicObject *self, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames) {
    return Atomic_add_sub(self, args, nargs, kwnames, "add", 0);
}

static PyObject *Atomic_sub(AtomicObject *self, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames) {
    return Atomic_add_sub(self, args, nargs, kwnames, "sub", 1);
}

static PyObject *Atomic_get(AtomicObject *self, PyObject *Py_UNUSED(ignored)) {
    return PyLong_FromUnsignedLong(__atomic_load_n(self->value, __ATOMIC_SEQ_CST));
}

static PyObject *Atomic_set(AtomicObject *self, PyObject *arg) {
    uint32_t value;
    if (as_uint32(arg, "value", &value) < 0) {
        return NULL;
    }
    __atomic_store_n(self->value, value, __ATOMIC_SEQ_CST);
    Py_RETURN_NONE;
}

static PyObject *Atomic_cmpset(AtomicObject *self, PyObject *const *args, Py_ssize_t nargs) {
    uint32_t expected, desired;
    if (nargs != 2) {
        PyErr_Format(PyExc_TypeError, "cmpset() takes 2 arguments (%zd given)", nargs);
        return NULL;
    }
    if (as_uint32(args[0], "cmp", &expected) < 0 || as_uint32(args[1], "new", &desired) < 0) {
        return NULL;
    }
    return PyBool_FromLong(
        __atomic_compare_exchange_n(self->value, &expected, desired, 0, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST));
}

/* Swoole's wait(): the value 1 is consumed (set to 0) at once; at 0 the caller sleeps until a wakeup() sets 1 or
 * the timeout runs out; any other value fails at once. */
static PyObject *Atomic_wait(AtomicObject *self, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames) {
    static const char *const names[] = {"timeout"};
    PyObject *a[1];
    int64_t deadline;
    if (parse_args("wait", args, nargs, kwnames, names, 0, 1, a) < 0 || parse_deadline(a[0], 1.0, &deadline) < 0) {
        return NULL;
    }
    for (;;) {
        uint32_t one = 1;
        if (__atomic_compare_exchange_n(self->value, &one, 0, 0, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST)) {
            Py_RETURN_TRUE;
        }
        if (one != 0) {
            Py_RETURN_FALSE;
        }
        /* One sleep until the deadline: wakeup() wakes it, and a signal interrupts it (EINTR) for its handler. */
        int64_t remaining = deadline < 0 ? 86400 * 1000000000LL : deadline - now_ns();
        if (remaining <= 0) {
            Py_RETURN_FALSE;
        }
        Py_BEGIN_ALLOW_THREADS
        futex_wait(self->value, 0, remaining);
        Py_END_ALLOW_THREADS
        if (PyErr_CheckSignals() < 0) {
            return NULL;
        }
    }
}

static PyObject *Atomic_wakeup(AtomicObject *self, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames) {
    static const char *const names[] = {"n"};
    PyObject *a[1];
    uint32_t n = 1;
    if (parse_args("wakeup", args, nargs, kwnames, names, 0, 1, a) < 0 || (a[0] && as_uint32(a[0], "n", &n) < 0)) {
        return NULL;
    }
    uint32_t zero = 0;
    if (__atomic_compare_exchange_n(self->value, &zero, 1, 0, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST)) {
        futex_wake(self->value, n > INT_MAX ? INT_MAX : (int)n);
    }
    Py_RETURN_TRUE;
}

static PyMethodDef Atomic_methods[] = {
    {"add", (PyCFunction)(void (*)(void))Atomic_add, METH_FASTCALL | METH_KEYWORDS,
     "add(n=1): add n (wrapping at 2**32); the new value."},
    {"sub", (PyCFunction)(void (*)(void))Atomic_sub, METH_FASTCALL | METH_KEYWORDS,
     "sub(n=1): subtract n (wrapping at 0); the new value."},
    {"get", (PyCFunction)Atomic_get, METH_NOARGS, "get(): the value."},
    {"set", (PyCFunction)Atomic_set, METH_O, "set(value): store value."},
    {"cmpset", (PyCFunction)(void (*)(void))Atomic_cmpset, METH_FASTCALL,
     "cmpset(cmp, new): store new if the value is cmp; True when it was."},
    {"wait", (PyCFunction)(void (*)(void))Atomic_wait, METH_FASTCALL | METH_KEYWORDS,
     "wait(timeout=1.0): consume a wakeup (the value 1 becomes 0), sleeping while the value is 0; False on timeout."},
    {"wakeup", (PyCFunction)(void (*)(void))Atomic_wakeup, METH_FASTCALL | METH_KEYWORDS,
     "wakeup(n=1): set the value from 0 to 1 and wake up to n processes sleeping in wait()."},
    {NULL},
};

static PyTypeObject AtomicType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "pyswoole.state._shm.Atomic",
    .tp_basicsize = sizeof(AtomicObject),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE,
    .tp_doc = "A 32-bit unsigned integer in shared memory, changed with atomic instructions.",
    .tp_new = Atomic_new,
    .tp_dealloc = (destructor)Atomic_dealloc,
    .tp_methods = Atomic_methods,
};

static PyObject *AtomicLong_new(PyTypeObject *type, PyObject *args, PyObject *kwargs) {
    static char *kwlist[] = {"value", NULL};
    PyObject *initial = NULL;
    int64_t value = 0;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "|O:AtomicLong", kwlist, &initial)) {
        return NULL;
    }
    if (initial != NULL && as_int64(initial, "value", &value) < 0) {
        return NULL;
    }
    int64_t *memory = shared_alloc(PAGE);
    if (memory == NULL) {
        return NULL;
    }
    AtomicLongObject *self = (AtomicLongObject *)type->tp_alloc(type, 0);
    if (self == NULL) {
        munmap(memory, PAGE);
        return NULL;
    }
    self->value = memory;
    *memory = value;
    return (PyObject *)self;
}

static void AtomicLong_dealloc(AtomicLongObject *self) {
    if (self->value != NULL) {
        munmap(self->value, PAGE);
    }
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyObject *AtomicLong_add_sub(AtomicLongObject *self, PyObject *const *args, Py_ssize_t nargs,
                                    PyObject *kwnames, const char *fname, int negate) {
    static const char *const names[] = {"n"};
    PyObject *a[1];
    int64_t n = 1;
    if (parse_args(fname, args, nargs, kwnames, names, 0, 1, a) < 0 || (a[0] && as_int64(a[0], "n", &n) < 0)) {
        return NULL;
    }
    /* Two's complement wrapping, done on the unsigned type where it is defined behaviour. */
    uint64_t *cell = (uint64_t *)self->value;
    uint64_t result = negate ? __atomic_sub_fetch(cell, (uint64_t)n, __ATOMIC_SEQ_CST)
                             : __atomic_add_fetch(cell, (uint64_t)n, __ATOMIC_SEQ_CST);
    return PyLong_FromLongLong((long long)(int64_t)result);
}

static PyObject *AtomicLong_add(AtomicLongObject *self, PyObject *const *args, Py_ssize_t nargs,
                                PyObject *kwnames) {
    return AtomicLong_add_sub(self, args, nargs, kwnames, "add", 0);
}

static PyObject *AtomicLong_sub(AtomicLongObject *self, PyObject *const *args, Py_ssize_t nargs,
                                PyObject *kwnames) {
    return AtomicLong_add_sub(self, args, nargs, kwnames, "sub", 1);
}

static PyObject *AtomicLong_get(AtomicLongObject *self, PyObject *Py_UNUSED(ignored)) {
    return PyLong_FromLongLong(__atomic_load_n(self->value, __ATOMIC_SEQ_CST));
}

static PyObject *AtomicLong_set(AtomicLongObject *self, PyObject *arg) {
    int64_t value;
    if (as_int64(arg, "value", &value) < 0) {
        return NULL;
    }
    __atomic_store_n(self->value, value, __ATOMIC_SEQ_CST);
    Py_RETURN_NONE;
}

static PyObject *AtomicLong_cmpset(AtomicLongObject *self, PyObject *const *args, Py_ssize_t nargs) {
    int64_t expected, desired;
    if (nargs != 2) {
        PyErr_Format(PyExc_TypeError, "cmpset() takes 2 arguments (%zd given)", nargs);
        return NULL;
    }
    if (as_int64(args[0], "cmp", &expected) < 0 || as_int64(args[1], "new", &desired) < 0) {
        return NULL;
    }
    return PyBool_FromLong(
        __atomic_compare_exchange_n(self->value, &expected, desired, 0, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST));
}

static PyMethodDef AtomicLong_methods[] = {
    {"add", (PyCFunction)(void (*)(void))AtomicLong_add, METH_FASTCALL | METH_KEYWORDS,
     "add(n=1): add n (wrapping at 64 bits); the new value."},
    {"sub", (PyCFunction)(void (*)(void))AtomicLong_sub, METH_FASTCALL | METH_KEYWORDS,
     "sub(n=1): subtract n (wrapping at 64 bits); the new value."},
    {"get", (PyCFunction)AtomicLong_get, METH_NOARGS, "get(): the value."},
    {"set", (PyCFunction)AtomicLong_set, METH_O, "set(value): store value."},
    {"cmpset", (PyCFunction)(void (*)(void))AtomicLong_cmpset, METH_FASTCALL,
     "cmpset(cmp, new): store new if the value is cmp; True when it was."},
    {NULL},
};

static PyTypeObject AtomicLongType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "pyswoole.state._shm.AtomicLong",
    .tp_basicsize = sizeof(AtomicLongObject),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE,
    .tp_doc = "A 64-bit signed integer in shared memory, changed with atomic instructions.",
    .tp_new = AtomicLong_new,
    .tp_dealloc = (destructor)AtomicLong_dealloc,
    .tp_methods = AtomicLong_methods,
};

/* ------------------------------------------------------------------------------------------------------------ */
/* Lock                                                                                                         */
/* ------------------------------------------------------------------------------------------------------------ */

typedef struct {
    uint32_t word;     /* MUTEX, SEM, SPINLOCK: the holder's pid (| WAITERS); RWLOCK: the writer's pid */
    uint32_t seq;      /* RWLOCK: bumped by every release; its waiters sleep on it */
    uint32_t sleepers; /* RWLOCK: processes asleep on seq */
    uint32_t readers[RW_READER_SLOTS]; /* RWLOCK: the pid of each read hold, 0 for a free slot */
} lock_shm;

typedef struct {
    PyObject_HEAD
    lock_shm *shm;
    int type;
} LockObject;

static const char *lock_name(int type) {
    switch (type) {
    case LOCK_RWLOCK:
        return "a Lock (RWLOCK)";
    case LOCK_SEM:
        return "a Lock (SEM)";
    case LOCK_SPINLOCK:
        return "a Lock (SPINLOCK)";
    default:
        return "a Lock (MUTEX)";
    }
}

static void rw_notify(lock_shm *shm) {
    __atomic_add_fetch(&shm->seq, 1, __ATOMIC_SEQ_CST);
    if (__atomic_load_n(&shm->sleepers, __ATOMIC_SEQ_CST) > 0) {
        futex_wake(&shm->seq, INT_MAX);
    }
}

/* Frees what dead processes hold: the writer word and read slots. */
static void rw_reap(lock_shm *shm, int zombies, wait_state *ws) {
    uint32_t writer = __atomic_load_n(&shm->word, __ATOMIC_SEQ_CST);
    if (writer != 0 && process_is_dead(writer, zombies) &&
        __atomic_compare_exchange_n(&shm->word, &writer, 0, 0, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST)) {
        ws->dead_pid = writer;
        rw_notify(shm);
    }
    for (int i = 0; i < RW_READER_SLOTS; i++) {
        uint32_t reader = __atomic_load_n(&shm->readers[i], __ATOMIC_SEQ_CST);
        if (reader != 0 && process_is_dead(reader, zombies) &&
            __atomic_compare_exchange_n(&shm->readers[i], &reader, 0, 0, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST)) {
            ws->dead_pid = reader;
            rw_notify(shm);
        }
    }
}

/* Sleeps on seq while it still is `seen`; after a whole slice, clears what dead processes hold. */
static void rw_sleep(lock_shm *shm, uint32_t seen, int64_t slice_ns, wait_state *ws) {
    __atomic_add_fetch(&shm->sleepers, 1, __ATOMIC_SEQ_CST);
    int err = futex_wait(&shm->seq, seen, slice_ns);
    __atomic_sub_fetch(&shm->sleepers, 1, __ATOMIC_SEQ_CST);
    if (err == ETIMEDOUT) {
        rw_reap(shm, 1, ws);
    }
}

static int rw_no_readers(lock_shm *shm) {
    for (int i = 0; i < RW_READER_SLOTS; i++) {
        if (__atomic_load_n(&shm->readers[i], __ATOMIC_SEQ_CST) != 0) {
            return 0;
        }
    }
    return 1;
}

static int rw_has_free_slot(lock_shm *shm) {
    for (int i = 0; i < RW_READER_SLOTS; i++) {
        if (__atomic_load_n(&shm->readers[i], __ATOMIC_SEQ_CST) == 0) {
            return 1;
        }
    }
    return 0;
}

/* A free read slot claimed for this process, or -1 when all are taken. */
static int rw_claim_slot(lock_shm *shm) {
    int start = (int)(self_pid % RW_READER_SLOTS);
    for (int k = 0; k < RW_READER_SLOTS; k++) {
        int i = (start + k) % RW_READER_SLOTS;
        uint32_t expected = 0;
        if (__atomic_load_n(&shm->readers[i], __ATOMIC_RELAXED) == 0 &&
            __atomic_compare_exchange_n(&shm->readers[i], &expected, self_pid, 0, __ATOMIC_SEQ_CST,
                                        __ATOMIC_RELAXED)) {
            return i;
        }
    }
    return -1;
}

/* A read hold: a slot is claimed, then the writer word is checked; a writer claims its word, then checks the
 * slots. Both sides use sequentially consistent operations, so at least one of them sees the other. */
static int rw_try_read(lock_shm *shm) {
    if (__atomic_load_n(&shm->word, __ATOMIC_SEQ_CST) != 0) {
        return 0;
    }
    int slot = rw_claim_slot(shm);
    if (slot < 0) {
        return 0;
    }
    if (__atomic_load_n(&shm->word, __ATOMIC_SEQ_CST) == 0) {
        return 1;
    }
    __atomic_store_n(&shm->readers[slot], 0, __ATOMIC_SEQ_CST);
    rw_notify(shm);
    return 0;
}

static int rw_try_write(lock_shm *shm) {
    uint32_t expected = 0;
    if (!__atomic_compare_exchange_n(&shm->word, &expected, self_pid, 0, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST)) {
        return 0;
    }
    if (rw_no_readers(shm)) {
        return 1;
    }
    __atomic_store_n(&shm->word, 0, __ATOMIC_SEQ_CST);
    rw_notify(shm);
    return 0;
}

static int lock_try(LockObject *self, int read, wait_state *ws) {
    lock_shm *shm = self->shm;
    if (self->type != LOCK_RWLOCK) {
        return plock_try(&shm->word) || plock_take_from_dead(&shm->word, ws);
    }
    if (read ? rw_try_read(shm) : rw_try_write(shm)) {
        return 1;
    }
    rw_reap(shm, 0, ws);
    return ws->dead_pid != 0 && (read ? rw_try_read(shm) : rw_try_write(shm));
}

/* One round of waiting, at most slice_ns: GOT or AGAIN. Runs without the GIL. */
static int lock_step(LockObject *self, int read, int64_t slice_ns, wait_state *ws) {
    lock_shm *shm = self->shm;
    if (self->type != LOCK_RWLOCK) {
        return plock_wait_once(&shm->word, slice_ns, self->type != LOCK_SPINLOCK, ws);
    }
    if (read) {
        if (rw_try_read(shm)) {
            return GOT;
        }
        uint32_t seen = __atomic_load_n(&shm->seq, __ATOMIC_SEQ_CST);
        if (__atomic_load_n(&shm->word, __ATOMIC_SEQ_CST) == 0 && rw_has_free_slot(shm)) {
            return AGAIN; /* the writer has just left: try again at once */
        }
        rw_sleep(shm, seen, slice_ns, ws);
        return AGAIN;
    }
    if (!ws->have_writer) {
        uint32_t seen = __atomic_load_n(&shm->seq, __ATOMIC_SEQ_CST);
        uint32_t expected = 0;
        if (!__atomic_compare_exchange_n(&shm->word, &expected, self_pid, 0, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST)) {
            rw_sleep(shm, seen, slice_ns, ws);
            return AGAIN;
        }
        ws->have_writer = 1; /* new readers now stay out; wait for the present ones to leave */
    }
    uint32_t seen = __atomic_load_n(&shm->seq, __ATOMIC_SEQ_CST);
    if (rw_no_readers(shm)) {
        return GOT;
    }
    rw_sleep(shm, seen, slice_ns, ws);
    return AGAIN;
}

/* Gives up a wait that ran out of time or was interrupted: a writer word claimed on the way is released. */
static void lock_abandon(LockObject *self, wait_state *ws) {
    if (ws->have_writer) {
        __atomic_store_n(&self->shm->word, 0, __ATOMIC_SEQ_CST);
        rw_notify(self->shm);
        ws->have_writer = 0;
    }
}

/* 1 when the lock is taken, 0 when the deadline passed (-1: none; 0: do not wait), -1 with an exception. */
static int lock_acquire(LockObject *self, int read, int64_t deadline, int wait) {
    wait_state ws = {0, 0};
    int got = lock_try(self, read, &ws);
    while (!got && wait) {
        int64_t slice = CHECK_INTERVAL_NS;
        if (deadline >= 0) {
            int64_t remaining = deadline - now_ns();
            if (remaining <= 0) {
                break;
            }
            slice = remaining < slice ? remaining : slice;
        }
        int step;
        Py_BEGIN_ALLOW_THREADS
        step = lock_step(self, read, slice, &ws);
        Py_END_ALLOW_THREADS
        got = step == GOT;
        if (!got && PyErr_CheckSignals() < 0) {
            lock_abandon(self, &ws);
            return -1;
        }
    }
    if (!got) {
        lock_abandon(self, &ws);
    }
    if (ws.dead_pid != 0) {
        warn_taken_over(lock_name(self->type), ws.dead_pid);
    }
    return got;
}

static PyObject *Lock_new(PyTypeObject *type, PyObject *args, PyObject *kwargs) {
    static char *kwlist[] = {"type", NULL};
    int lock_type = LOCK_MUTEX;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "|i:Lock", kwlist, &lock_type)) {
        return NULL;
    }
    if (lock_type != LOCK_MUTEX && lock_type != LOCK_RWLOCK && lock_type != LOCK_SPINLOCK && lock_type != LOCK_SEM) {
        PyErr_Format(PyExc_ValueError, "type must be Lock.MUTEX, RWLOCK, SPINLOCK or SEM, got %d", lock_type);
        return NULL;
    }
    lock_shm *memory = shared_alloc(PAGE);
    if (memory == NULL) {
        return NULL;
    }
    LockObject *self = (LockObject *)type->tp_alloc(type, 0);
    if (self == NULL) {
        munmap(memory, PAGE);
        return NULL;
    }
    self->shm = memory;
    self->type = lock_type;
    return (PyObject *)self;
}

static void Lock_dealloc(LockObject *self) {
    if (self->shm != NULL) {
        munmap(self->shm, PAGE);
    }
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyObject *acquire_result(int result) {
    if (result < 0) {
        return NULL;
    }
    return PyBool_FromLong(result);
}

static PyObject *Lock_lock(LockObject *self, PyObject *Py_UNUSED(ignored)) {
    return acquire_result(lock_acquire(self, 0, -1, 1));
}

static PyObject *Lock_trylock(LockObject *self, PyObject *Py_UNUSED(ignored)) {
    return acquire_result(lock_acquire(self, 0, -1, 0));
}

static PyObject *Lock_lock_read(LockObject *self, PyObject *Py_UNUSED(ignored)) {
    return acquire_result(lock_acquire(self, self->type == LOCK_RWLOCK, -1, 1));
}

static PyObject *Lock_trylock_read(LockObject *self, PyObject *Py_UNUSED(ignored)) {
    return acquire_result(lock_acquire(self, self->type == LOCK_RWLOCK, -1, 0));
}

static PyObject *Lock_lockwait(LockObject *self, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames) {
    static const char *const names[] = {"timeout"};
    PyObject *a[1];
    int64_t deadline;
    if (parse_args("lockwait", args, nargs, kwnames, names, 0, 1, a) < 0 ||
        parse_deadline(a[0], 1.0, &deadline) < 0) {
        return NULL;
    }
    return acquire_result(lock_acquire(self, 0, deadline, 1));
}

/* Releases what this process holds; a SEM, like a semaphore, may be released by any process. */
static int lock_release(LockObject *self) {
    lock_shm *shm = self->shm;
    if (self->type != LOCK_RWLOCK) {
        uint32_t held = __atomic_load_n(&shm->word, __ATOMIC_RELAXED);
        if (held == 0 || (self->type != LOCK_SEM && OWNER(held) != self_pid)) {
            return 0;
        }
        if (self->type == LOCK_SEM) {
            /* Whoever holds it now is released; a waiter setting the waiters bit meanwhile makes us retry, and
             * of two concurrent releases of one hold only one succeeds. */
            while (!__atomic_compare_exchange_n(&shm->word, &held, 0, 0, __ATOMIC_RELEASE, __ATOMIC_RELAXED)) {
                if (held == 0) {
                    return 0;
                }
            }
            if (held & WAITERS) {
                futex_wake(&shm->word, 1);
            }
            return 1;
        }
        plock_release(&shm->word);
        return 1;
    }
    uint32_t mine = self_pid;
    if (__atomic_compare_exchange_n(&shm->word, &mine, 0, 0, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST)) {
        rw_notify(shm);
        return 1;
    }
    for (int i = 0; i < RW_READER_SLOTS; i++) {
        mine = self_pid;
        if (__atomic_load_n(&shm->readers[i], __ATOMIC_RELAXED) == self_pid &&
            __atomic_compare_exchange_n(&shm->readers[i], &mine, 0, 0, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST)) {
            rw_notify(shm);
            return 1;
        }
    }
    return 0;
}

static PyObject *Lock_unlock(LockObject *self, PyObject *Py_UNUSED(ignored)) {
    return PyBool_FromLong(lock_release(self));
}

static PyObject *Lock_enter(LockObject *self, PyObject *Py_UNUSED(ignored)) {
    if (lock_acquire(self, 0, -1, 1) < 0) {
        return NULL;
    }
    return Py_NewRef(self);
}

static PyObject *Lock_exit(LockObject *self, PyObject *const *Py_UNUSED(args), Py_ssize_t Py_UNUSED(nargs)) {
    lock_release(self);
    Py_RETURN_FALSE;
}

static PyObject *Lock_get_type(LockObject *self, void *Py_UNUSED(closure)) { return PyLong_FromLong(self->type); }

static PyMethodDef Lock_methods[] = {
    {"lock", (PyCFunction)Lock_lock, METH_NOARGS, "lock(): take the lock (RWLOCK: for writing), waiting as long as it takes."},
    {"trylock", (PyCFunction)Lock_trylock, METH_NOARGS, "trylock(): take the lock if it is free; True when taken."},
    {"lock_read", (PyCFunction)Lock_lock_read, METH_NOARGS,
     "lock_read(): take a RWLOCK for reading (other types: as lock())."},
    {"trylock_read", (PyCFunction)Lock_trylock_read, METH_NOARGS,
     "trylock_read(): take a RWLOCK for reading if no writer holds it (other types: as trylock())."},
    {"lockwait", (PyCFunction)(void (*)(void))Lock_lockwait, METH_FASTCALL | METH_KEYWORDS,
     "lockwait(timeout=1.0): take the lock, waiting at most timeout seconds; False when the time ran out."},
    {"unlock", (PyCFunction)Lock_unlock, METH_NOARGS,
     "unlock(): release what this process holds (SEM: any holder); False when there was nothing to release."},
    {"__enter__", (PyCFunction)Lock_enter, METH_NOARGS, NULL},
    {"__exit__", (PyCFunction)(void (*)(void))Lock_exit, METH_FASTCALL, NULL},
    {NULL},
};

static PyGetSetDef Lock_getset[] = {
    {"type", (getter)Lock_get_type, NULL, "The lock type: Lock.MUTEX, RWLOCK, SPINLOCK or SEM.", NULL},
    {NULL},
};

static PyTypeObject LockType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "pyswoole.state._shm.Lock",
    .tp_basicsize = sizeof(LockObject),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE,
    .tp_doc = "A lock between processes whose holder may die without wedging the others.",
    .tp_new = Lock_new,
    .tp_dealloc = (destructor)Lock_dealloc,
    .tp_methods = Lock_methods,
    .tp_getset = Lock_getset,
};

/* ------------------------------------------------------------------------------------------------------------ */
/* Table                                                                                                        */
/* ------------------------------------------------------------------------------------------------------------ */

/* A row: its header, then its columns from ROW_DATA on. Rows 0..size-1 are the buckets (a key's hash picks one);
 * rows size.. are the conflict area, chained behind a bucket when its own row is taken. */
typedef struct {
    uint32_t lock;    /* the bucket's lock word: used on bucket rows only, it covers the whole chain */
    uint32_t next;    /* the next row of the chain (in the free list: the next free row); 0 ends it */
    uint8_t active;   /* holds a key */
    uint8_t key_len;
    char key[KEY_MAX];
} row_t;

#define ROW_DATA 80

typedef struct {
    uint64_t free_head; /* the conflict area's free rows: (tag << 32) | first row, 0 when empty */
    uint32_t num;
    uint32_t available;
    uint32_t conflict_count;
    uint32_t conflict_max_level;
    uint64_t insert_count;
    uint64_t delete_count;
    char pad1[24];
    uint64_t update_count; /* alone on its cache line: every update of every process bumps it */
    char pad2[56];
} table_head;

_Static_assert(sizeof(row_t) <= ROW_DATA, "row header larger than ROW_DATA");
_Static_assert(sizeof(table_head) == 128, "table header is two cache lines");

typedef struct {
    PyObject *name;
    int type;
    uint32_t offset; /* from the row's data */
    uint32_t size;   /* STRING: capacity in bytes */
} column_t;

typedef struct {
    PyObject_HEAD
    char *memory; /* NULL until create() */
    size_t memory_size;
    table_head *head;
    char *rows;
    uint32_t size;
    uint32_t mask;
    uint32_t conflict_rows;
    uint32_t row_size;
    size_t item_size;
    Py_ssize_t ncolumns;
    column_t *columns;
    PyObject *column_index; /* name -> index in columns */
    int full_reported;
} TableObject;

#define ROW(t, i) ((row_t *)((t)->rows + (size_t)(i) * (t)->row_size))
#define DATA(row) ((char *)(row) + ROW_DATA)
#define ALIGN8(n) (((n) + 7) & ~(size_t)7)

static inline uint32_t row_number(TableObject *t, row_t *row) {
    return (uint32_t)(((char *)row - t->rows) / t->row_size);
}

/* FNV-1a, then a multiply-xorshift finish so that the low bits (the bucket) depend on every byte. */
static inline uint64_t key_hash(const char *key, Py_ssize_t len) {
    uint64_t h = 0xcbf29ce484222325ULL;
    for (Py_ssize_t i = 0; i < len; i++) {
        h ^= (unsigned char)key[i];
        h *= 0x100000001b3ULL;
    }
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdULL;
    h ^= h >> 33;
    return h;
}

static size_t table_memory_size(TableObject *t) {
    size_t row_size = ALIGN8(ROW_DATA + t->item_size);
    return sizeof(table_head) + ((size_t)t->size + t->conflict_rows) * row_size;
}

static uint32_t pool_pop(TableObject *t) {
    uint64_t old = __atomic_load_n(&t->head->free_head, __ATOMIC_ACQUIRE);
    for (;;) {
        uint32_t first = (uint32_t)old;
        if (first == 0) {
            return 0;
        }
        /* The tag makes the swap fail if the row was taken and given back meanwhile (ABA). */
        uint32_t next = __atomic_load_n(&ROW(t, first)->next, __ATOMIC_RELAXED);
        uint64_t new = (((old >> 32) + 1) << 32) | next;
        if (__atomic_compare_exchange_n(&t->head->free_head, &old, new, 1, __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE)) {
            __atomic_sub_fetch(&t->head->available, 1, __ATOMIC_RELAXED);
            return first;
        }
    }
}

static void pool_push(TableObject *t, uint32_t number) {
    uint64_t old = __atomic_load_n(&t->head->free_head, __ATOMIC_ACQUIRE);
    for (;;) {
        __atomic_store_n(&ROW(t, number)->next, (uint32_t)old, __ATOMIC_RELAXED);
        uint64_t new = (((old >> 32) + 1) << 32) | number;
        if (__atomic_compare_exchange_n(&t->head->free_head, &old, new, 1, __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE)) {
            __atomic_add_fetch(&t->head->available, 1, __ATOMIC_RELAXED);
            return;
        }
    }
}

/* Locks a bucket; the pid of a dead holder it took the lock over from, or 0. */
static uint32_t bucket_lock(row_t *bucket) {
    if (LIKELY(plock_try(&bucket->lock))) {
        return 0;
    }
    for (int i = 0; i < ROW_SPINS; i++) {
        cpu_relax();
        if (__atomic_load_n(&bucket->lock, __ATOMIC_RELAXED) == 0 && plock_try(&bucket->lock)) {
            return 0;
        }
    }
    wait_state ws = {0, 0};
    Py_BEGIN_ALLOW_THREADS
    while (plock_wait_once(&bucket->lock, CHECK_INTERVAL_NS, 1, &ws) != GOT) {
    }
    Py_END_ALLOW_THREADS
    return ws.dead_pid;
}

static inline void bucket_unlock(row_t *bucket, uint32_t dead_pid) {
    plock_release(&bucket->lock);
    if (UNLIKELY(dead_pid != 0)) {
        warn_taken_over("a bucket lock of a Table", dead_pid);
    }
}

/* The row holding key in the bucket's chain, or NULL. *prev: the row before it; *depth: how many conflict rows
 * the chain has. Called with the bucket locked. */
static row_t *chain_find(TableObject *t, row_t *bucket, const char *key, Py_ssize_t len, row_t **prev,
                         uint32_t *depth) {
    const uint32_t total = t->size + t->conflict_rows;
    row_t *before = NULL, *row = bucket;
    uint32_t level = 0;
    for (;;) {
        if (row->active && row->key_len == len && memcmp(row->key, key, (size_t)len) == 0) {
            if (prev != NULL) {
                *prev = before;
            }
            return row;
        }
        uint32_t next = __atomic_load_n(&row->next, __ATOMIC_RELAXED);
        if (next == 0 || next >= total) {
            if (depth != NULL) {
                *depth = level;
            }
            return NULL;
        }
        before = row;
        row = ROW(t, next);
        level++;
    }
}

static void row_zero(TableObject *t, row_t *row) {
    char *data = DATA(row);
    for (Py_ssize_t i = 0; i < t->ncolumns; i++) {
        column_t *c = &t->columns[i];
        if (c->type == TYPE_STRING) {
            memset(data + c->offset, 0, sizeof(uint32_t));
        } else {
            memset(data + c->offset, 0, 8);
        }
    }
}

/* A row for a new key: the bucket's own row when free, else one of the conflict area; NULL when the table is
 * full. Its key is written and its columns zeroed, but nobody sees it before row_publish(). Bucket locked. */
static row_t *row_claim(TableObject *t, row_t *bucket, const char *key, Py_ssize_t len, uint32_t depth) {
    row_t *row = bucket;
    if (bucket->active) {
        uint32_t number = pool_pop(t);
        if (number == 0) {
            return NULL;
        }
        row = ROW(t, number);
        __atomic_add_fetch(&t->head->conflict_count, 1, __ATOMIC_RELAXED);
        uint32_t level = depth + 1, max = __atomic_load_n(&t->head->conflict_max_level, __ATOMIC_RELAXED);
        while (level > max && !__atomic_compare_exchange_n(&t->head->conflict_max_level, &max, level, 1,
                                                           __ATOMIC_RELAXED, __ATOMIC_RELAXED)) {
        }
    }
    row->key_len = (uint8_t)len;
    memcpy(row->key, key, (size_t)len);
    row_zero(t, row);
    return row;
}

static void row_publish(TableObject *t, row_t *bucket, row_t *row) {
    if (row == bucket) {
        __atomic_store_n(&row->active, 1, __ATOMIC_RELEASE);
    } else {
        row->active = 1;
        __atomic_store_n(&row->next, __atomic_load_n(&bucket->next, __ATOMIC_RELAXED), __ATOMIC_RELAXED);
        __atomic_store_n(&bucket->next, row_number(t, row), __ATOMIC_RELEASE);
    }
    __atomic_add_fetch(&t->head->num, 1, __ATOMIC_RELAXED);
    __atomic_add_fetch(&t->head->insert_count, 1, __ATOMIC_RELAXED);
}

/* Copies one column of a row's data to the same offset of dst (a string: its length and its bytes only). */
static void column_copy_out(const column_t *c, char *dst, const char *data) {
    if (c->type == TYPE_STRING) {
        uint32_t len;
        memcpy(&len, data + c->offset, sizeof(len));
        len = len > c->size ? c->size : len;
        memcpy(dst + c->offset, &len, sizeof(len));
        memcpy(dst + c->offset + sizeof(len), data + c->offset + sizeof(len), len);
    } else {
        memcpy(dst + c->offset, data + c->offset, 8);
    }
}

static void row_copy_out(TableObject *t, char *dst, const char *data) {
    for (Py_ssize_t i = 0; i < t->ncolumns; i++) {
        column_copy_out(&t->columns[i], dst, data);
    }
}

static PyObject *column_value(column_t *c, const char *data) {
    const char *at = data + c->offset;
    if (c->type == TYPE_INT) {
        int64_t v;
        memcpy(&v, at, sizeof(v));
        return PyLong_FromLongLong(v);
    }
    if (c->type == TYPE_FLOAT) {
        double v;
        memcpy(&v, at, sizeof(v));
        return PyFloat_FromDouble(v);
    }
    uint32_t len;
    memcpy(&len, at, sizeof(len));
    len = len > c->size ? c->size : len;
    /* Only valid UTF-8 is ever written; "replace" keeps a row torn by a killed writer readable. */
    return PyUnicode_DecodeUTF8(at + sizeof(len), len, "replace");
}

static PyObject *row_dict(TableObject *t, const char *data) {
    PyObject *dict = PyDict_New();
    if (dict == NULL) {
        return NULL;
    }
    for (Py_ssize_t i = 0; i < t->ncolumns; i++) {
        PyObject *value = column_value(&t->columns[i], data);
        if (value == NULL || PyDict_SetItem(dict, t->columns[i].name, value) < 0) {
            Py_XDECREF(value);
            Py_DECREF(dict);
            return NULL;
        }
        Py_DECREF(value);
    }
    return dict;
}

static int table_ready(TableObject *t) {
    if (UNLIKELY(t->memory == NULL)) {
        PyErr_SetString(ServerError, "the Table is not created: call create() after its column() calls");
        return 0;
    }
    return 1;
}

static int parse_key(PyObject *key, const char **out, Py_ssize_t *len) {
    if (UNLIKELY(!PyUnicode_Check(key))) {
        PyErr_Format(PyExc_ValueError, "key must be a str, not %.100s", Py_TYPE(key)->tp_name);
        return -1;
    }
    *out = PyUnicode_AsUTF8AndSize(key, len);
    if (*out == NULL) {
        return -1;
    }
    if (UNLIKELY(*len > KEY_MAX)) {
        PyErr_Format(PyExc_ValueError, "key %R is %zd bytes in UTF-8, longer than %d", key, *len, KEY_MAX);
        return -1;
    }
    return 0;
}

static column_t *find_column(TableObject *t, PyObject *name) {
    if (!PyUnicode_Check(name)) {
        PyErr_Format(PyExc_ValueError, "a column name must be a str, not %.100s", Py_TYPE(name)->tp_name);
        return NULL;
    }
    PyObject *index = PyDict_GetItemWithError(t->column_index, name);
    if (index == NULL) {
        if (!PyErr_Occurred()) {
            PyErr_Format(PyExc_ValueError, "unknown column %R", name);
        }
        return NULL;
    }
    return &t->columns[PyLong_AsSsize_t(index)];
}

static void report_full(TableObject *t) {
    if (t->full_reported) {
        return;
    }
    t->full_reported = 1; /* once per table and process */
    PyObject *type, *value, *traceback;
    PyErr_Fetch(&type, &value, &traceback);
    PyObject *result = PyObject_CallMethod(
        logger, "warning", "sII", "Table is full (%d buckets, %d rows in the conflict area): a new key was refused; make it larger",
        (unsigned int)t->size, (unsigned int)t->conflict_rows);
    Py_XDECREF(result);
    if (PyErr_Occurred()) {
        PyErr_WriteUnraisable(logger);
    }
    PyErr_Restore(type, value, traceback);
}

/* A value converted before the bucket is locked: no Python code runs once it is. */
typedef struct {
    column_t *column;
    int64_t i;
    double f;
    PyObject *str; /* a strong reference keeps s alive */
    const char *s;
    Py_ssize_t len;
} staged_t;

static int stage_value(column_t *c, PyObject *value, staged_t *out) {
    out->column = c;
    out->str = NULL;
    if (c->type == TYPE_INT) {
        if (!PyLong_Check(value)) {
            PyErr_Format(PyExc_ValueError, "column %R takes an int, not %.100s", c->name, Py_TYPE(value)->tp_name);
            return -1;
        }
        int overflow;
        out->i = PyLong_AsLongLongAndOverflow(value, &overflow);
        if (overflow) {
            PyErr_Format(PyExc_ValueError, "value %R of column %R does not fit in 64 signed bits", value, c->name);
            return -1;
        }
        return out->i == -1 && PyErr_Occurred() ? -1 : 0;
    }
    if (c->type == TYPE_FLOAT) {
        if (PyFloat_Check(value)) {
            out->f = PyFloat_AS_DOUBLE(value);
            return 0;
        }
        if (!PyLong_Check(value)) {
            PyErr_Format(PyExc_ValueError, "column %R takes a float, not %.100s", c->name, Py_TYPE(value)->tp_name);
            return -1;
        }
        out->f = PyLong_AsDouble(value);
        if (out->f == -1.0 && PyErr_Occurred()) {
            PyErr_Clear();
            PyErr_Format(PyExc_ValueError, "value %R of column %R is too large for a float", value, c->name);
            return -1;
        }
        return 0;
    }
    if (!PyUnicode_Check(value)) {
        PyErr_Format(PyExc_ValueError, "column %R takes a str, not %.100s", c->name, Py_TYPE(value)->tp_name);
        return -1;
    }
    out->s = PyUnicode_AsUTF8AndSize(value, &out->len);
    if (out->s == NULL) {
        return -1;
    }
    if ((size_t)out->len > c->size) {
        PyErr_Format(PyExc_ValueError, "value of column %R is %zd bytes in UTF-8, longer than its size %u", c->name,
                     out->len, (unsigned int)c->size);
        return -1;
    }
    out->str = Py_NewRef(value);
    return 0;
}

static void row_write(row_t *row, const staged_t *values, Py_ssize_t n) {
    char *data = DATA(row);
    for (Py_ssize_t i = 0; i < n; i++) {
        const column_t *c = values[i].column;
        char *at = data + c->offset;
        if (c->type == TYPE_INT) {
            memcpy(at, &values[i].i, 8);
        } else if (c->type == TYPE_FLOAT) {
            memcpy(at, &values[i].f, 8);
        } else {
            uint32_t len = (uint32_t)values[i].len;
            memcpy(at, &len, sizeof(len));
            memcpy(at + sizeof(len), values[i].s, len);
        }
    }
}

static PyObject *Table_new(PyTypeObject *type, PyObject *args, PyObject *kwargs) {
    static char *kwlist[] = {"size", "conflict_proportion", NULL};
    Py_ssize_t size;
    double conflict_proportion = TABLE_MIN_CONFLICT;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "n|d:Table", kwlist, &size, &conflict_proportion)) {
        return NULL;
    }
    if (size < 1) {
        PyErr_Format(PyExc_ValueError, "size must be at least 1, got %zd", size);
        return NULL;
    }
    if (conflict_proportion != conflict_proportion) {
        PyErr_SetString(PyExc_ValueError, "conflict_proportion must be a number, not NaN");
        return NULL;
    }
    /* As Swoole: a power of two, at least 64, at most 2**31; a conflict area of 0.2 to 1.0 times that. */
    uint64_t rows = (uint64_t)1 << TABLE_MIN_SIZE_SHIFT;
    while (rows < (uint64_t)size && rows < TABLE_MAX_SIZE) {
        rows <<= 1;
    }
    conflict_proportion = conflict_proportion < TABLE_MIN_CONFLICT   ? TABLE_MIN_CONFLICT
                          : conflict_proportion > TABLE_MAX_CONFLICT ? TABLE_MAX_CONFLICT
                                                                     : conflict_proportion;
    PyObject *index = PyDict_New();
    if (index == NULL) {
        return NULL;
    }
    TableObject *self = (TableObject *)type->tp_alloc(type, 0);
    if (self == NULL) {
        Py_DECREF(index);
        return NULL;
    }
    self->size = (uint32_t)rows;
    self->mask = (uint32_t)rows - 1;
    double conflict_rows = (double)rows * conflict_proportion;
    /* Row numbers are 32-bit: only a table of 2**31 buckets needs this cap. */
    self->conflict_rows = conflict_rows > (double)(UINT32_MAX - rows) ? (uint32_t)(UINT32_MAX - rows)
                                                                      : (uint32_t)conflict_rows;
    self->column_index = index;
    return (PyObject *)self;
}

static void Table_dealloc(TableObject *self) {
    if (self->memory != NULL) {
        munmap(self->memory, self->memory_size);
    }
    for (Py_ssize_t i = 0; i < self->ncolumns; i++) {
        Py_DECREF(self->columns[i].name);
    }
    PyMem_Free(self->columns);
    Py_XDECREF(self->column_index);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyObject *Table_column(TableObject *self, PyObject *args, PyObject *kwargs) {
    static char *kwlist[] = {"name", "type", "size", NULL};
    PyObject *name;
    int type;
    Py_ssize_t size = 0;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "Oi|n:column", kwlist, &name, &type, &size)) {
        return NULL;
    }
    if (self->memory != NULL) {
        PyErr_Format(ServerError, "unable to add column %R: the Table is already created", name);
        return NULL;
    }
    if (!PyUnicode_Check(name) || PyUnicode_GET_LENGTH(name) == 0) {
        PyErr_Format(PyExc_ValueError, "a column name must be a non-empty str, got %R", name);
        return NULL;
    }
    int known = PyDict_Contains(self->column_index, name);
    if (known != 0) {
        if (known > 0) {
            PyErr_Format(PyExc_ValueError, "column %R already exists", name);
        }
        return NULL;
    }
    size_t stored = 8;
    if (type == TYPE_STRING) {
        if (size < 1 || size > INT32_MAX) {
            PyErr_Format(PyExc_ValueError, "size of string column %R must be in [1, 2**31), got %zd", name, size);
            return NULL;
        }
        stored = ALIGN8(sizeof(uint32_t) + (size_t)size);
    } else if (type != TYPE_INT && type != TYPE_FLOAT) {
        PyErr_Format(PyExc_ValueError,
                     "type of column %R must be Table.TYPE_INT, TYPE_FLOAT or TYPE_STRING, got %d", name, type);
        return NULL;
    }
    if (self->item_size + stored > INT32_MAX) {
        PyErr_Format(PyExc_ValueError, "column %R makes a row larger than 2 GiB", name);
        return NULL;
    }
    column_t *columns = PyMem_Realloc(self->columns, sizeof(column_t) * (size_t)(self->ncolumns + 1));
    if (columns == NULL) {
        return PyErr_NoMemory();
    }
    self->columns = columns;
    PyObject *position = PyLong_FromSsize_t(self->ncolumns);
    if (position == NULL || PyDict_SetItem(self->column_index, name, position) < 0) {
        Py_XDECREF(position);
        return NULL;
    }
    Py_DECREF(position);
    Py_INCREF(name);
    PyUnicode_InternInPlace(&name);
    column_t *c = &columns[self->ncolumns++];
    c->name = name;
    c->type = type;
    c->offset = (uint32_t)self->item_size;
    c->size = type == TYPE_STRING ? (uint32_t)size : 8;
    self->item_size += stored;
    Py_RETURN_NONE;
}

static PyObject *Table_create(TableObject *self, PyObject *Py_UNUSED(ignored)) {
    if (self->memory != NULL) {
        PyErr_SetString(ServerError, "the Table is already created");
        return NULL;
    }
    size_t memory_size = table_memory_size(self);
    char *memory = shared_alloc(memory_size);
    if (memory == NULL) {
        return NULL;
    }
    self->memory = memory;
    self->memory_size = memory_size;
    self->head = (table_head *)memory;
    self->rows = memory + sizeof(table_head);
    self->row_size = (uint32_t)ALIGN8(ROW_DATA + self->item_size);
    /* The mapping is zero-filled: every row is free; chain the conflict area into the free list. */
    uint32_t first = self->size, end = self->size + self->conflict_rows;
    for (uint32_t i = first; i < end; i++) {
        ROW(self, i)->next = i + 1 < end ? i + 1 : 0;
    }
    self->head->free_head = self->conflict_rows ? first : 0;
    self->head->available = self->conflict_rows;
    Py_RETURN_NONE;
}

static PyObject *Table_set(TableObject *self, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames) {
    static const char *const names[] = {"key", "value"};
    PyObject *a[2];
    const char *key;
    Py_ssize_t len;
    if (parse_args("set", args, nargs, kwnames, names, 2, 2, a) < 0 || !table_ready(self) ||
        parse_key(a[0], &key, &len) < 0) {
        return NULL;
    }
    if (!PyDict_Check(a[1])) {
        PyErr_Format(PyExc_ValueError, "value must be a dict of column name: value, not %.100s",
                     Py_TYPE(a[1])->tp_name);
        return NULL;
    }
    Py_ssize_t n = PyDict_GET_SIZE(a[1]), staged = 0, pos = 0;
    staged_t stack[16];
    staged_t *values = n <= 16 ? stack : PyMem_New(staged_t, (size_t)n);
    if (values == NULL) {
        return PyErr_NoMemory();
    }
    PyObject *name, *value, *result = NULL;
    while (PyDict_Next(a[1], &pos, &name, &value)) {
        column_t *c;
        if (staged == n) {
            PyErr_SetString(PyExc_RuntimeError, "value changed size during set()");
            goto done;
        }
        if ((c = find_column(self, name)) == NULL || stage_value(c, value, &values[staged]) < 0) {
            goto done;
        }
        staged++;
    }
    row_t *bucket = ROW(self, key_hash(key, len) & self->mask);
    uint32_t depth = 0, dead = bucket_lock(bucket);
    row_t *row = chain_find(self, bucket, key, len, NULL, &depth);
    if (row != NULL) {
        row_write(row, values, staged);
        __atomic_add_fetch(&self->head->update_count, 1, __ATOMIC_RELAXED);
    } else if ((row = row_claim(self, bucket, key, len, depth)) != NULL) {
        row_write(row, values, staged);
        row_publish(self, bucket, row);
    }
    bucket_unlock(bucket, dead);
    if (row == NULL) {
        report_full(self);
    }
    result = PyBool_FromLong(row != NULL);
done:
    for (Py_ssize_t i = 0; i < staged; i++) {
        Py_XDECREF(values[i].str);
    }
    if (values != stack) {
        PyMem_Free(values);
    }
    return result;
}

static PyObject *Table_get(TableObject *self, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames) {
    static const char *const names[] = {"key", "field"};
    PyObject *a[2];
    const char *key;
    Py_ssize_t len;
    if (parse_args("get", args, nargs, kwnames, names, 1, 2, a) < 0 || !table_ready(self) ||
        parse_key(a[0], &key, &len) < 0) {
        return NULL;
    }
    column_t *only = NULL;
    if (a[1] != NULL && a[1] != Py_None && (only = find_column(self, a[1])) == NULL) {
        return NULL;
    }
    char stack[1024];
    size_t need = self->item_size;
    char *buffer = need <= sizeof(stack) ? stack : PyMem_Malloc(need);
    if (buffer == NULL) {
        return PyErr_NoMemory();
    }
    row_t *bucket = ROW(self, key_hash(key, len) & self->mask);
    uint32_t dead = bucket_lock(bucket);
    row_t *row = chain_find(self, bucket, key, len, NULL, NULL);
    if (row != NULL) {
        if (only == NULL) {
            row_copy_out(self, buffer, DATA(row));
        } else {
            column_copy_out(only, buffer, DATA(row));
        }
    }
    bucket_unlock(bucket, dead);
    PyObject *result;
    if (row == NULL) {
        result = Py_NewRef(Py_None);
    } else {
        result = only == NULL ? row_dict(self, buffer) : column_value(only, buffer);
    }
    if (buffer != stack) {
        PyMem_Free(buffer);
    }
    return result;
}

static int table_contains(TableObject *self, PyObject *key_obj) {
    const char *key;
    Py_ssize_t len;
    if (!table_ready(self) || parse_key(key_obj, &key, &len) < 0) {
        return -1;
    }
    row_t *bucket = ROW(self, key_hash(key, len) & self->mask);
    uint32_t dead = bucket_lock(bucket);
    row_t *row = chain_find(self, bucket, key, len, NULL, NULL);
    bucket_unlock(bucket, dead);
    return row != NULL;
}

static PyObject *Table_exists(TableObject *self, PyObject *key) {
    int found = table_contains(self, key);
    return found < 0 ? NULL : PyBool_FromLong(found);
}

static PyObject *Table_delete(TableObject *self, PyObject *key_obj) {
    const char *key;
    Py_ssize_t len;
    if (!table_ready(self) || parse_key(key_obj, &key, &len) < 0) {
        return NULL;
    }
    row_t *bucket = ROW(self, key_hash(key, len) & self->mask), *prev = NULL;
    uint32_t dead = bucket_lock(bucket);
    row_t *row = chain_find(self, bucket, key, len, &prev, NULL);
    if (row == bucket) {
        /* The bucket row stays the head of its chain, free for the next key of the bucket. */
        __atomic_store_n(&row->active, 0, __ATOMIC_RELEASE);
    } else if (row != NULL) {
        __atomic_store_n(&prev->next, __atomic_load_n(&row->next, __ATOMIC_RELAXED), __ATOMIC_RELEASE);
        row->active = 0;
        pool_push(self, row_number(self, row));
    }
    if (row != NULL) {
        __atomic_sub_fetch(&self->head->num, 1, __ATOMIC_RELAXED);
        __atomic_add_fetch(&self->head->delete_count, 1, __ATOMIC_RELAXED);
    }
    bucket_unlock(bucket, dead);
    return PyBool_FromLong(row != NULL);
}

static PyObject *table_incr(TableObject *self, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames,
                            const char *fname, int negate) {
    static const char *const names[] = {"key", "column", "by"};
    PyObject *a[3];
    const char *key;
    Py_ssize_t len;
    column_t *c;
    if (parse_args(fname, args, nargs, kwnames, names, 2, 3, a) < 0 || !table_ready(self) ||
        parse_key(a[0], &key, &len) < 0 || (c = find_column(self, a[1])) == NULL) {
        return NULL;
    }
    if (c->type == TYPE_STRING) {
        PyErr_Format(PyExc_ValueError, "column %R is a string: %s() takes an int or float column", c->name, fname);
        return NULL;
    }
    staged_t by = {c, 1, 1.0, NULL, NULL, 0};
    if (a[2] != NULL && stage_value(c, a[2], &by) < 0) {
        return NULL;
    }
    row_t *bucket = ROW(self, key_hash(key, len) & self->mask);
    uint32_t depth = 0, dead = bucket_lock(bucket);
    row_t *row = chain_find(self, bucket, key, len, NULL, &depth);
    int inserted = 0;
    if (row == NULL && (row = row_claim(self, bucket, key, len, depth)) != NULL) {
        inserted = 1;
    }
    int64_t ivalue = 0;
    double fvalue = 0.0;
    if (row != NULL) {
        char *at = DATA(row) + c->offset;
        if (c->type == TYPE_INT) {
            uint64_t current;
            memcpy(&current, at, 8);
            /* Wraps at 64 bits, computed unsigned where wrapping is defined. */
            current = negate ? current - (uint64_t)by.i : current + (uint64_t)by.i;
            memcpy(at, &current, 8);
            ivalue = (int64_t)current;
        } else {
            memcpy(&fvalue, at, 8);
            fvalue = negate ? fvalue - by.f : fvalue + by.f;
            memcpy(at, &fvalue, 8);
        }
        if (inserted) {
            row_publish(self, bucket, row);
        } else {
            __atomic_add_fetch(&self->head->update_count, 1, __ATOMIC_RELAXED);
        }
    }
    bucket_unlock(bucket, dead);
    if (row == NULL) {
        report_full(self);
        Py_RETURN_FALSE;
    }
    return c->type == TYPE_INT ? PyLong_FromLongLong(ivalue) : PyFloat_FromDouble(fvalue);
}

static PyObject *Table_incr(TableObject *self, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames) {
    return table_incr(self, args, nargs, kwnames, "incr", 0);
}

static PyObject *Table_decr(TableObject *self, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames) {
    return table_incr(self, args, nargs, kwnames, "decr", 1);
}

static PyObject *Table_count(TableObject *self, PyObject *Py_UNUSED(ignored)) {
    if (!table_ready(self)) {
        return NULL;
    }
    return PyLong_FromUnsignedLong(__atomic_load_n(&self->head->num, __ATOMIC_RELAXED));
}

static Py_ssize_t Table_len(TableObject *self) {
    if (!table_ready(self)) {
        return -1;
    }
    return (Py_ssize_t)__atomic_load_n(&self->head->num, __ATOMIC_RELAXED);
}

static PyObject *Table_stats(TableObject *self, PyObject *Py_UNUSED(ignored)) {
    if (!table_ready(self)) {
        return NULL;
    }
    table_head *h = self->head;
    return Py_BuildValue("{sIsIsIsKsKsKsIsI}", "num", __atomic_load_n(&h->num, __ATOMIC_RELAXED),
                         "conflict_count", __atomic_load_n(&h->conflict_count, __ATOMIC_RELAXED),
                         "conflict_max_level", __atomic_load_n(&h->conflict_max_level, __ATOMIC_RELAXED),
                         "insert_count", (unsigned long long)__atomic_load_n(&h->insert_count, __ATOMIC_RELAXED),
                         "update_count", (unsigned long long)__atomic_load_n(&h->update_count, __ATOMIC_RELAXED),
                         "delete_count", (unsigned long long)__atomic_load_n(&h->delete_count, __ATOMIC_RELAXED),
                         "available_slice_num", __atomic_load_n(&h->available, __ATOMIC_RELAXED),
                         "total_slice_num", self->conflict_rows);
}

static PyObject *Table_get_memory_size(TableObject *self, void *Py_UNUSED(closure)) {
    return PyLong_FromSize_t(self->memory != NULL ? self->memory_size : table_memory_size(self));
}

static PyObject *Table_get_size(TableObject *self, void *Py_UNUSED(closure)) {
    return PyLong_FromUnsignedLong(self->size);
}

static PyObject *Table_get_created(TableObject *self, void *Py_UNUSED(closure)) {
    return PyBool_FromLong(self->memory != NULL);
}

/* Iteration: one bucket at a time, its rows copied out under its lock, then handed out as (key, row) pairs. A row
 * present through the whole iteration is seen exactly once: rows never move between buckets. */
typedef struct {
    PyObject_HEAD
    TableObject *table;
    uint32_t bucket;
    char *rows; /* copies of the current bucket's active rows */
    size_t capacity;
    size_t count;
    size_t position;
} TableIterObject;

static PyTypeObject TableIterType;

static PyObject *Table_iter(TableObject *self) {
    if (!table_ready(self)) {
        return NULL;
    }
    TableIterObject *it = PyObject_New(TableIterObject, &TableIterType);
    if (it == NULL) {
        return NULL;
    }
    it->table = (TableObject *)Py_NewRef(self);
    it->bucket = 0;
    it->rows = NULL;
    it->capacity = it->count = it->position = 0;
    return (PyObject *)it;
}

static void TableIter_dealloc(TableIterObject *it) {
    Py_DECREF(it->table);
    PyMem_Free(it->rows);
    PyObject_Free(it);
}

/* Copies the active rows of the next non-empty bucket; 0 at the end, -1 on error. */
static int table_iter_fill(TableIterObject *it) {
    TableObject *t = it->table;
    const uint32_t total = t->size + t->conflict_rows;
    while (it->bucket < t->size) {
        row_t *bucket = ROW(t, it->bucket++);
        if (!__atomic_load_n(&bucket->active, __ATOMIC_RELAXED) && __atomic_load_n(&bucket->next, __ATOMIC_RELAXED) == 0) {
            continue;
        }
        uint32_t dead = bucket_lock(bucket);
        size_t count = 0;
        for (row_t *row = bucket;;) {
            if (row->active) {
                if (count == it->capacity) {
                    /* PyMem_Realloc runs no Python code: safe under the lock. */
                    size_t capacity = it->capacity ? it->capacity * 2 : 4;
                    char *rows = PyMem_Realloc(it->rows, capacity * t->row_size);
                    if (rows == NULL) {
                        bucket_unlock(bucket, dead);
                        PyErr_NoMemory();
                        return -1;
                    }
                    it->rows = rows;
                    it->capacity = capacity;
                }
                row_t *copy = (row_t *)(it->rows + count * t->row_size);
                memcpy(copy, row, ROW_DATA);
                row_copy_out(t, DATA(copy), DATA(row));
                count++;
            }
            uint32_t next = __atomic_load_n(&row->next, __ATOMIC_RELAXED);
            if (next == 0 || next >= total) {
                break;
            }
            row = ROW(t, next);
        }
        bucket_unlock(bucket, dead);
        if (count > 0) {
            it->count = count;
            it->position = 0;
            return 1;
        }
    }
    return 0;
}

static PyObject *TableIter_next(TableIterObject *it) {
    if (it->position == it->count) {
        it->count = it->position = 0;
        if (table_iter_fill(it) <= 0) {
            return NULL;
        }
    }
    TableObject *t = it->table;
    row_t *row = (row_t *)(it->rows + it->position++ * t->row_size);
    PyObject *key = PyUnicode_DecodeUTF8(row->key, row->key_len > KEY_MAX ? KEY_MAX : row->key_len, "replace");
    if (key == NULL) {
        return NULL;
    }
    PyObject *values = row_dict(t, DATA(row));
    if (values == NULL) {
        Py_DECREF(key);
        return NULL;
    }
    PyObject *pair = PyTuple_Pack(2, key, values);
    Py_DECREF(key);
    Py_DECREF(values);
    return pair;
}

static PyTypeObject TableIterType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "pyswoole.state._shm.TableIterator",
    .tp_basicsize = sizeof(TableIterObject),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_dealloc = (destructor)TableIter_dealloc,
    .tp_iter = PyObject_SelfIter,
    .tp_iternext = (iternextfunc)TableIter_next,
};

static PyMethodDef Table_methods[] = {
    {"column", (PyCFunction)(void (*)(void))Table_column, METH_VARARGS | METH_KEYWORDS,
     "column(name, type, size=0): declare a column (size: a string column's capacity in UTF-8 bytes)."},
    {"create", (PyCFunction)Table_create, METH_NOARGS, "create(): allocate the shared memory."},
    {"set", (PyCFunction)(void (*)(void))Table_set, METH_FASTCALL | METH_KEYWORDS,
     "set(key, value): write the columns of dict value into the row of key; False when the table is full."},
    {"get", (PyCFunction)(void (*)(void))Table_get, METH_FASTCALL | METH_KEYWORDS,
     "get(key, field=None): the row of key as a dict, or the value of one column; None when key is absent."},
    {"exists", (PyCFunction)Table_exists, METH_O, "exists(key): whether key has a row."},
    {"delete", (PyCFunction)Table_delete, METH_O, "delete(key): remove the row of key; False when it had none."},
    {"incr", (PyCFunction)(void (*)(void))Table_incr, METH_FASTCALL | METH_KEYWORDS,
     "incr(key, column, by=1): add by to a column atomically (a new row starts at 0); the new value, or False "
     "when the table is full."},
    {"decr", (PyCFunction)(void (*)(void))Table_decr, METH_FASTCALL | METH_KEYWORDS,
     "decr(key, column, by=1): subtract by from a column atomically; the new value, or False when full."},
    {"count", (PyCFunction)Table_count, METH_NOARGS, "count(): the number of rows."},
    {"stats", (PyCFunction)Table_stats, METH_NOARGS, "stats(): Swoole's counters of the table."},
    {NULL},
};

static PyGetSetDef Table_getset[] = {
    {"memory_size", (getter)Table_get_memory_size, NULL, "Bytes of shared memory the table takes (or will take).",
     NULL},
    {"size", (getter)Table_get_size, NULL, "Number of buckets: the size asked for, rounded up as Swoole does.", NULL},
    {"created", (getter)Table_get_created, NULL, "Whether create() has run.", NULL},
    {NULL},
};

static PySequenceMethods Table_as_sequence = {
    .sq_length = (lenfunc)Table_len,
    .sq_contains = (objobjproc)table_contains,
};

static PyTypeObject TableType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "pyswoole.state._shm.Table",
    .tp_basicsize = sizeof(TableObject),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE,
    .tp_doc = "Rows of typed columns in shared memory, looked up by a str key.",
    .tp_new = Table_new,
    .tp_dealloc = (destructor)Table_dealloc,
    .tp_methods = Table_methods,
    .tp_getset = Table_getset,
    .tp_as_sequence = &Table_as_sequence,
    .tp_iter = (getiterfunc)Table_iter,
};

/* ------------------------------------------------------------------------------------------------------------ */
/* Module                                                                                                       */
/* ------------------------------------------------------------------------------------------------------------ */

static struct PyModuleDef shm_module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "pyswoole.state._shm",
    .m_doc = "Shared memory made before fork: Table, Atomic, AtomicLong and Lock (see pyswoole.state).",
    .m_size = -1,
};

static PyObject *import_attribute(const char *module_name, const char *name) {
    PyObject *module = PyImport_ImportModule(module_name);
    if (module == NULL) {
        return NULL;
    }
    PyObject *attribute = PyObject_GetAttrString(module, name);
    Py_DECREF(module);
    return attribute;
}

PyMODINIT_FUNC PyInit__shm(void) {
    PyTypeObject *types[] = {&AtomicType, &AtomicLongType, &LockType, &TableType, &TableIterType};
    for (size_t i = 0; i < sizeof(types) / sizeof(types[0]); i++) {
        if (PyType_Ready(types[i]) < 0) {
            return NULL;
        }
    }
    if ((ServerError = import_attribute("pyswoole.errors", "ServerError")) == NULL ||
        (logger = import_attribute("pyswoole.log", "logger")) == NULL) {
        return NULL;
    }
    refresh_pid();
    if (pthread_atfork(NULL, NULL, refresh_pid) != 0) {
        PyErr_SetString(PyExc_RuntimeError, "pthread_atfork failed");
        return NULL;
    }
    PyObject *module = PyModule_Create(&shm_module);
    if (module == NULL) {
        return NULL;
    }
    const char *names[] = {"Atomic", "AtomicLong", "Lock", "Table"};
    for (size_t i = 0; i < 4; i++) {
        if (PyModule_AddObjectRef(module, names[i], (PyObject *)types[i]) < 0) {
            Py_DECREF(module);
            return NULL;
        }
    }
    if (PyModule_AddIntConstant(module, "KEY_MAX", KEY_MAX) < 0 ||
        PyModule_AddIntConstant(module, "RW_READER_SLOTS", RW_READER_SLOTS) < 0 ||
        PyModule_AddIntConstant(module, "CHECK_INTERVAL_MS", (long)(CHECK_INTERVAL_NS / 1000000)) < 0) {
        Py_DECREF(module);
        return NULL;
    }
    return module;
}
