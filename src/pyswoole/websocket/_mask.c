/*
 * WebSocket masking (RFC 6455 section 5.3): XOR a payload with a repeating 4-byte key.
 *
 * apply_mask(data, mask) masks (or unmasks: XOR is its own inverse) a payload with a given key: the encoder's
 * routine. unmask_payload(frame, start, end) unmasks frame[start:end] with the key in the 4 bytes before
 * start, where a masked frame keeps it: the parser's routine, which saves slicing out the payload and the key
 * on every received frame.
 *
 * Both work 8 bytes at a time: the key repeated twice is one 64-bit word, and since 8 is a multiple of 4 the
 * word stays lined up with the key at every step. memcpy keeps loads and stores alignment-safe; compilers
 * turn it into plain moves.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

/* out[i] = in[i] ^ key[i % 4] for i < length; a new bytes object, or NULL with an exception set. */
static PyObject *
masked_bytes(const unsigned char *in, Py_ssize_t length, const unsigned char *key)
{
    PyObject *result = PyBytes_FromStringAndSize(NULL, length);
    if (result == NULL) {
        return NULL;
    }
    unsigned char *out = (unsigned char *)PyBytes_AS_STRING(result);
    unsigned char key8[8];
    uint64_t word_key;
    Py_ssize_t i = 0;

    memcpy(key8, key, 4);
    memcpy(key8 + 4, key, 4);
    memcpy(&word_key, key8, 8);
    for (; i + 8 <= length; i += 8) {
        uint64_t word;
        memcpy(&word, in + i, 8);
        word ^= word_key;
        memcpy(out + i, &word, 8);
    }
    /* i is a multiple of 8, hence of 4: the tail starts at key[0] */
    for (; i < length; i++) {
        out[i] = in[i] ^ key[i & 3];
    }
    return result;
}

static PyObject *
apply_mask(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    Py_buffer data, mask;
    PyObject *result = NULL;

    if (nargs != 2) {
        PyErr_Format(PyExc_TypeError, "apply_mask() takes exactly 2 arguments (%zd given)", nargs);
        return NULL;
    }
    if (PyObject_GetBuffer(args[0], &data, PyBUF_SIMPLE) < 0) {
        return NULL;
    }
    if (PyObject_GetBuffer(args[1], &mask, PyBUF_SIMPLE) < 0) {
        PyBuffer_Release(&data);
        return NULL;
    }
    if (mask.len != 4) {
        PyErr_Format(PyExc_ValueError, "the mask must be 4 bytes, not %zd", mask.len);
    } else {
        result = masked_bytes((const unsigned char *)data.buf, data.len, (const unsigned char *)mask.buf);
    }
    PyBuffer_Release(&mask);
    PyBuffer_Release(&data);
    return result;
}

static PyObject *
unmask_payload(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    Py_buffer frame;
    Py_ssize_t start, end;
    PyObject *result = NULL;

    if (nargs != 3) {
        PyErr_Format(PyExc_TypeError, "unmask_payload() takes exactly 3 arguments (%zd given)", nargs);
        return NULL;
    }
    start = PyLong_AsSsize_t(args[1]);
    if (start == -1 && PyErr_Occurred()) {
        return NULL;
    }
    end = PyLong_AsSsize_t(args[2]);
    if (end == -1 && PyErr_Occurred()) {
        return NULL;
    }
    if (PyObject_GetBuffer(args[0], &frame, PyBUF_SIMPLE) < 0) {
        return NULL;
    }
    if (start < 4 || end < start || end > frame.len) {
        PyErr_Format(PyExc_ValueError, "no masked payload at [%zd:%zd] of %zd bytes", start, end, frame.len);
    } else {
        const unsigned char *buf = (const unsigned char *)frame.buf;
        result = masked_bytes(buf + start, end - start, buf + start - 4);
    }
    PyBuffer_Release(&frame);
    return result;
}

static PyMethodDef mask_methods[] = {
    {"apply_mask", (PyCFunction)(void (*)(void))apply_mask, METH_FASTCALL,
     "apply_mask(data, mask, /)\n--\n\n"
     "``data`` XOR-ed with the 4-byte ``mask`` repeated (RFC 6455 section 5.3): masking and unmasking alike."},
    {"unmask_payload", (PyCFunction)(void (*)(void))unmask_payload, METH_FASTCALL,
     "unmask_payload(frame, start, end, /)\n--\n\n"
     "``frame[start:end]`` unmasked with the key in ``frame[start - 4:start]``."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef_Slot mask_slots[] = {
#ifdef Py_mod_multiple_interpreters
    {Py_mod_multiple_interpreters, Py_MOD_PER_INTERPRETER_GIL_SUPPORTED},
#endif
    {0, NULL},
};

static struct PyModuleDef mask_module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "pyswoole.websocket._mask",
    .m_doc = "WebSocket payload masking in C.",
    .m_size = 0,
    .m_methods = mask_methods,
    .m_slots = mask_slots,
};

PyMODINIT_FUNC
PyInit__mask(void)
{
    return PyModuleDef_Init(&mask_module);
}
