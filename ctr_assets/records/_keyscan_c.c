/* One pass over a Firehose object: where each top-level record starts and ends, and its text with every
 * key normalized by the original rule (re.sub(r'\W+', '', key.lower()) on plain ASCII keys) and the
 * whitespace between tokens removed: one NDJSON line, newline included.
 *
 * This is the fast path of ctr_assets.records.bulk, never a second set of rules. The scanner follows the
 * JSON grammar only as far as telling keys from values and finding where a record ends; the caller parses
 * every text it returns, and anything the scanner cannot vouch for is left to the exact per-record path:
 *   - a record whose text is returned as None ("refused"): a key with an escape, a control or non-ASCII
 *     byte, a key that normalizes to nothing, two keys of one object that normalize to the same name, an
 *     object with more than MAX_KEYS_CHECKED keys, nesting deeper than max_depth, a scalar token longer
 *     than MAX_SCALAR_BYTES (integers beyond 64 bits decode differently), or whitespace between two
 *     scalar bytes (removing it would join two tokens into one);
 *   - everything from a point on ("handover"): anything but whitespace before a record's `{`, a record
 *     that never ends, a bracket that closes the wrong kind, a record of max_record_bytes or more.
 *
 * The same walk, hashing instead of copying, gives the shape of a flatfile line for the table merge
 * (first_of_each_shape): DuckDB detects the schema from one line per shape instead of from every line.
 *
 * Both are optional: where this module was not compiled, ctr_assets/records/_keyscan.py puts Python in
 * their place (bulk.py splits record by record; first_of_each_shape has a Python twin, tested against it).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#ifdef __SSE2__
#include <emmintrin.h>
#endif
#include <string.h>

#define MAX_KEYS_CHECKED 256 /* collision checks compare every pair of an object's keys */
#define MAX_SCALAR_BYTES 18  /* every integer this long fits in 64 bits */
#define STACK_LIMIT 1024     /* brackets deeper than this hand the object over */

typedef struct {
    Py_ssize_t start, length; /* a normalized key in the output text */
} Key;

typedef struct {
    const unsigned char *data;
    Py_ssize_t size;
    unsigned char *out;       /* a record's text; never longer than the record and a newline */
    Key *keys;                /* keys of the objects open at the moment, innermost last */
    Py_ssize_t keys_capacity;
    Py_ssize_t max_depth;
    Py_ssize_t max_record_bytes;
} Scanner;

enum { RECORD_OK, RECORD_REFUSED, RECORD_HANDOVER, RECORD_NO_MEMORY };

static inline int is_space(unsigned char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }

/* What a key byte becomes under the rule: itself lower-cased when it is a word byte, DROP when the rule
 * deletes it, REFUSE when the exact path must decide (escapes, control bytes, non-ASCII). */
enum { DROP = 0, REFUSE = 1 };
static unsigned char key_byte[256];

static void fill_key_bytes(void)
{
    for (int b = 0; b < 256; b++) {
        if ((b >= 'a' && b <= 'z') || (b >= '0' && b <= '9') || b == '_')
            key_byte[b] = (unsigned char)b;
        else if (b >= 'A' && b <= 'Z')
            key_byte[b] = (unsigned char)(b | 0x20);
        else if (b < 0x20 || b >= 0x80 || b == '\\')
            key_byte[b] = REFUSE;
        else
            key_byte[b] = DROP;
    }
}

/* Index just past the closing quote of the string whose opening quote is at `at`, or -1. Strings are
 * most of a record, so they are searched 16 bytes at a time for a quote or a backslash. */
static Py_ssize_t string_end(const unsigned char *data, Py_ssize_t size, Py_ssize_t at)
{
    Py_ssize_t i = at + 1;
    for (;;) {
#ifdef __SSE2__
        const __m128i quote = _mm_set1_epi8('"'), backslash = _mm_set1_epi8('\\');
        while (i + 16 <= size) {
            __m128i chunk = _mm_loadu_si128((const __m128i *)(data + i));
            int found = _mm_movemask_epi8(_mm_or_si128(_mm_cmpeq_epi8(chunk, quote), _mm_cmpeq_epi8(chunk, backslash)));
            if (found) {
                i += __builtin_ctz(found);
                break;
            }
            i += 16;
        }
#endif
        if (i >= size)
            return -1;
        if (data[i] == '"')
            return i + 1;
        i += data[i] == '\\' ? 2 : 1;
    }
}

/* Scan the record whose `{` is at `start`; on RECORD_OK or RECORD_REFUSED, *end is just past its `}`
 * and *length the length of its text in scanner->out. */
static int scan_record(Scanner *scanner, Py_ssize_t start, Py_ssize_t *end, Py_ssize_t *length)
{
    const unsigned char *data = scanner->data;
    Py_ssize_t size = scanner->size < start + scanner->max_record_bytes ? scanner->size : start + scanner->max_record_bytes;
    unsigned char *out = scanner->out;
    unsigned char stack[STACK_LIMIT + 1];
    Py_ssize_t first_key[STACK_LIMIT + 1];
    Py_ssize_t depth = 0, keys = 0, o = 0, scalar_run = 0;
    int refused = 0, expect_key = 0, space_before = 0;

    for (Py_ssize_t i = start; i < size;) {
        unsigned char c = data[i];
        if (is_space(c)) {
            space_before = 1;
            i++;
            continue;
        }
        if (c != '"' && c != '{' && c != '[' && c != '}' && c != ']' && c != ',' && c != ':') {
            /* A scalar byte (number, literal, or anything else the parser will judge). */
            if (scalar_run && space_before)
                refused = 1;
            if (++scalar_run > MAX_SCALAR_BYTES)
                refused = 1;
            out[o++] = c;
            space_before = 0;
            i++;
            continue;
        }
        scalar_run = 0;
        space_before = 0;
        if (c == '"') {
            Py_ssize_t after = string_end(data, size, i);
            if (after < 0)
                return RECORD_HANDOVER;
            if (!expect_key) {
                memcpy(out + o, data + i, after - i);
                o += after - i;
                i = after;
                continue;
            }
            Py_ssize_t key_start = o + 1;
            out[o++] = '"';
            for (Py_ssize_t k = i + 1; k < after - 1; k++) {
                unsigned char b = key_byte[data[k]];
                if (b > REFUSE)
                    out[o++] = b;
                else if (b == REFUSE)
                    refused = 1; /* Unicode case rules, escapes or invalid JSON: the exact path decides */
            }
            Py_ssize_t key_length = o - key_start;
            out[o++] = '"';
            if (key_length == 0)
                refused = 1; /* the empty name is replaced by a made-up one */
            if (keys - first_key[depth] >= MAX_KEYS_CHECKED)
                refused = 1;
            if (!refused) {
                for (Py_ssize_t k = first_key[depth]; k < keys; k++)
                    if (scanner->keys[k].length == key_length &&
                        memcmp(out + scanner->keys[k].start, out + key_start, key_length) == 0)
                        refused = 1; /* a collision: the exact path adds the suffix and counts it */
                if (keys == scanner->keys_capacity) {
                    Py_ssize_t capacity = scanner->keys_capacity * 2;
                    Key *grown = PyMem_Realloc(scanner->keys, capacity * sizeof(Key));
                    if (grown == NULL)
                        return RECORD_NO_MEMORY;
                    scanner->keys = grown;
                    scanner->keys_capacity = capacity;
                }
                scanner->keys[keys].start = key_start;
                scanner->keys[keys].length = key_length;
                keys++;
            }
            expect_key = 0;
            i = after;
            continue;
        }
        out[o++] = c;
        i++;
        if (c == '{' || c == '[') {
            if (++depth > STACK_LIMIT)
                return RECORD_HANDOVER;
            if (depth > scanner->max_depth)
                refused = 1;
            stack[depth] = c;
            first_key[depth] = keys;
            expect_key = c == '{';
        } else if (c == '}' || c == ']') {
            if (depth == 0 || stack[depth] != (c == '}' ? '{' : '['))
                return RECORD_HANDOVER;
            keys = first_key[depth];
            expect_key = 0;
            if (--depth == 0) {
                out[o++] = '\n';
                *end = i;
                *length = o;
                return refused ? RECORD_REFUSED : RECORD_OK;
            }
        } else {
            expect_key = c == ',' && stack[depth] == '{';
        }
    }
    return RECORD_HANDOVER; /* the record never ends, or is max_record_bytes or more */
}

PyDoc_STRVAR(scan_doc,
"scan(payload, position, budget, max_depth, max_record_bytes) -> (records, next_position, handover)\n\n"
"Records from `position` on, until at least `budget` bytes are read: a list of (start, end, text), text\n"
"being the normalized NDJSON line (newline included), or None when the exact per-record path must\n"
"decide. `handover` says that the exact path must take over at `next_position`; otherwise scanning\n"
"continues there (the end of the payload when it is done).");

static PyObject *scan(PyObject *module, PyObject *args)
{
    Py_buffer buffer;
    Py_ssize_t position, budget, max_depth, max_record_bytes;
    if (!PyArg_ParseTuple(args, "y*nnnn", &buffer, &position, &budget, &max_depth, &max_record_bytes))
        return NULL;
    if (position < 0 || position > buffer.len || max_record_bytes < 1) {
        PyBuffer_Release(&buffer);
        PyErr_SetString(PyExc_ValueError, "position must lie in the payload and max_record_bytes be positive");
        return NULL;
    }
    Scanner scanner = {buffer.buf, buffer.len, NULL, NULL, 64, max_depth, max_record_bytes};
    PyObject *records = PyList_New(0);
    PyObject *result = NULL;
    Py_ssize_t capacity = buffer.len - position < max_record_bytes ? buffer.len - position : max_record_bytes;
    scanner.out = PyMem_Malloc(capacity + 1); /* the text ends with a newline */
    scanner.keys = PyMem_Malloc(scanner.keys_capacity * sizeof(Key));
    if (records == NULL || scanner.out == NULL || scanner.keys == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    Py_ssize_t stop = position + budget, at = position;
    int handover = 0;
    for (;;) {
        while (at < buffer.len && is_space(scanner.data[at]))
            at++;
        if (at >= buffer.len || at >= stop)
            break;
        if (scanner.data[at] != '{') {
            handover = 1;
            break;
        }
        Py_ssize_t end = 0, length = 0;
        int outcome = scan_record(&scanner, at, &end, &length);
        if (outcome == RECORD_NO_MEMORY) {
            PyErr_NoMemory();
            goto done;
        }
        if (outcome == RECORD_HANDOVER) {
            handover = 1;
            break;
        }
        PyObject *text = outcome == RECORD_OK ? PyBytes_FromStringAndSize((const char *)scanner.out, length)
                                              : Py_NewRef(Py_None);
        PyObject *record = text == NULL ? NULL : Py_BuildValue("(nnN)", at, end, text);
        if (record == NULL || PyList_Append(records, record) < 0) {
            Py_XDECREF(record);
            goto done;
        }
        Py_DECREF(record);
        at = end;
    }
    result = Py_BuildValue("(OnO)", records, at, handover ? Py_True : Py_False);
done:
    Py_XDECREF(records);
    PyMem_Free(scanner.out);
    PyMem_Free(scanner.keys);
    PyBuffer_Release(&buffer);
    return result;
}

/* The shape of one NDJSON line: a 64-bit hash of its keys, its nesting, and the kind of each value, which
 * is all that JSON schema detection looks at once text-derived guesses (dates, UUIDs) are ignored. Arrays
 * whose elements share one shape count as that shape, whatever their length. */

enum { FRAME_OBJECT, FRAME_ARRAY };

typedef struct {
    int kind, uniform;
    Py_ssize_t count;
    uint64_t hash, first;
} Frame;

static inline uint64_t scramble(uint64_t z) /* splitmix64's finalizer: a bijection that spreads every bit */
{
    z += 0x9e3779b97f4a7c15ULL;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

/* Scrambling the hash before adding the value keeps small pairs apart: a plain hash ^ value made `[` `]`
 * and `{` `}` (0x5b ^ 0x5d == 0x7b ^ 0x7d), an empty list and an empty object, one shape. */
static inline uint64_t mix(uint64_t hash, uint64_t value) { return scramble(scramble(hash) ^ value); }

static uint64_t mix_bytes(uint64_t hash, const unsigned char *bytes, Py_ssize_t length)
{
    for (Py_ssize_t i = 0; i < length; i++)
        hash = (hash ^ bytes[i]) * 0x100000001b3ULL; /* FNV-1a over the bytes, then one full mix */
    return mix(hash, (uint64_t)length);
}

/* A value inside the frame on top of `frames` is complete: fold its shape into that frame. */
static void add_value(Frame *frame, uint64_t value)
{
    if (frame->kind == FRAME_ARRAY) {
        if (frame->count == 0)
            frame->first = value;
        else if (value != frame->first)
            frame->uniform = 0;
    }
    frame->hash = mix(frame->hash, value);
    frame->count++;
}

static uint64_t line_shape(const unsigned char *data, Py_ssize_t size)
{
    Frame frames[STACK_LIMIT + 2];
    Py_ssize_t depth = 0; /* frames[0] holds the line's top-level values */
    frames[0] = (Frame){FRAME_ARRAY, 1, 0, 0, 0};
    int expect_key = 0;
    for (Py_ssize_t i = 0; i < size;) {
        unsigned char c = data[i];
        if (is_space(c)) {
            i++;
        } else if (c == ',' || c == ':') {
            expect_key = c == ',' && frames[depth].kind == FRAME_OBJECT;
            i++;
        } else if (c == '"') {
            Py_ssize_t after = string_end(data, size, i);
            if (after < 0)
                return mix_bytes(0, data, size); /* not JSON: its own shape */
            if (expect_key)
                frames[depth].hash = mix(frames[depth].hash, mix_bytes('k', data + i, after - i));
            else
                add_value(&frames[depth], 's');
            expect_key = 0;
            i = after;
        } else if (c == '{' || c == '[') {
            if (depth > STACK_LIMIT)
                return mix_bytes(0, data, size);
            frames[++depth] = (Frame){c == '{' ? FRAME_OBJECT : FRAME_ARRAY, 1, 0, c, 0};
            expect_key = c == '{';
            i++;
        } else if (c == '}' || c == ']') {
            if (depth == 0)
                return mix_bytes(0, data, size);
            Frame *frame = &frames[depth--];
            uint64_t value = frame->kind == FRAME_ARRAY && frame->uniform && frame->count
                                 ? mix(']', frame->first) : mix(frame->hash, c);
            add_value(&frames[depth], value);
            expect_key = 0;
            i++;
        } else {
            Py_ssize_t start = i, fraction = 0;
            while (i < size && !is_space(data[i]) && data[i] != ',' && data[i] != ']' && data[i] != '}') {
                fraction |= data[i] == '.' || data[i] == 'e' || data[i] == 'E';
                i++;
            }
            uint64_t kind;
            if (c == 't' || c == 'f')
                kind = 'b';
            else if (c == 'n')
                kind = 'n';
            else if (fraction)
                kind = 'f';
            else if (i - start <= MAX_SCALAR_BYTES)
                kind = c == '-' ? 'm' : 'i'; /* DuckDB reads 0 and up as unsigned: both signs make HUGEINT */
            else
                kind = mix_bytes('L', data + start, i - start); /* BIGINT, UBIGINT or wider: its own shape */
            add_value(&frames[depth], kind);
        }
    }
    return depth ? mix_bytes(0, data, size) : frames[0].hash;
}

PyDoc_STRVAR(first_of_each_shape_doc,
"first_of_each_shape(lines, seen) -> bytes\n\n"
"The lines of the NDJSON `lines` whose shape is not in the set `seen` yet, in order, each ending with a\n"
"newline; their shapes join `seen`. Two lines have one shape when JSON schema detection cannot tell\n"
"them apart, so detecting over these lines gives what detecting over all of them gives.");

static PyObject *first_of_each_shape(PyObject *module, PyObject *args)
{
    Py_buffer buffer;
    PyObject *seen;
    if (!PyArg_ParseTuple(args, "y*O!", &buffer, &PySet_Type, &seen))
        return NULL;
    const unsigned char *data = buffer.buf;
    PyObject *result = NULL;
    unsigned char *out = PyMem_Malloc(buffer.len + 1);
    Py_ssize_t o = 0, start = 0;
    if (out == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    while (start < buffer.len) {
        const unsigned char *newline = memchr(data + start, '\n', buffer.len - start);
        Py_ssize_t end = newline ? newline - data : buffer.len;
        Py_ssize_t first = start;
        while (first < end && is_space(data[first]))
            first++;
        if (first < end) {
            PyObject *shape = PyLong_FromUnsignedLongLong(line_shape(data + start, end - start));
            int known = shape == NULL ? -1 : PySet_Contains(seen, shape);
            if (known == 0)
                known = PySet_Add(seen, shape) < 0 ? -1 : 0;
            Py_XDECREF(shape);
            if (known < 0)
                goto done;
            if (!known) {
                memcpy(out + o, data + start, end - start);
                o += end - start;
                out[o++] = '\n';
            }
        }
        start = end + 1;
    }
    result = PyBytes_FromStringAndSize((const char *)out, o);
done:
    PyMem_Free(out);
    PyBuffer_Release(&buffer);
    return result;
}

static PyMethodDef methods[] = {
    {"scan", scan, METH_VARARGS, scan_doc},
    {"first_of_each_shape", first_of_each_shape, METH_VARARGS, first_of_each_shape_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_keyscan_c",
    "Find the records of a Firehose object and normalize their keys in one pass (bulk.py); pick one\n"
    "flatfile line per shape for schema detection (table.py).", -1, methods,
};

PyMODINIT_FUNC PyInit__keyscan_c(void)
{
    fill_key_bytes();
    return PyModule_Create(&module);
}
