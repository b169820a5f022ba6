/* The shim every attempt runs under, in C: the same contract as forge/runtimes/shim.py.

    forge-shim --status STATUS --log LOG [--record FILE] [--exit-record FILE] [--cwd DIR]
        [--timeout S] [--grace S] [--mask-env NAME ...] [--env-stdin] -- argv...

forge/runtimes/native_shim.py builds this file with the system C compiler on first use (libc
only) and forge/runtimes/process.py runs it in place of the Python shim, which starts in ~30 ms
and holds ~6 MB of its own memory per attempt; this one starts in about a millisecond and holds
a few hundred kB. Every behaviour is the Python shim's, and one contract suite
(tests/runtimes/test_shell.py, test_shim_*.py, test_adopt.py) runs against both:

* reads the child's environment as a JSON object on stdin (`--env-stdin`), then runs argv
  (searched on the PATH of that environment) in its own process group, stdin from /dev/null;
* copies the child's stdout and stderr, merged, to LOG (append, 0600), masking the values of
  the `--mask-env` variables (even split across reads) and the secret shapes of events/redact.py
  line by line (an unfinished line waits for its end, or a blank once it is over 64 KiB);
* makes itself and the child child subreapers and records its children (PID, start ticks) in
  `--record` whenever they change; the child stops when the shim dies (a parent-death SIGSTOP);
* stops the child's group after `--timeout` s (SIGTERM, SIGKILL after `--grace`), not counting
  the time the child spends stopped;
* forwards SIGTERM, SIGINT and SIGHUP to the child's group;
* the moment it reaps the child, writes the exit record (`--exit-record FILE`) atomically
  (tmp + rename): the JSON of STATUS below, ended_at the time of the reap, spawn_error null;
* then kills what is left of the child's group and every process reparented to the shim,
  drains the output, and writes STATUS atomically (tmp + rename) as JSON: pid, exit_code,
  signal, timed_out, stop_signal, started_at, ended_at, spawn_error; STATUS is the authority,
  and the exit record is removed once it is written;
* test hook: with FORGE_SHIM_TEST_HOLD_AFTER_EXIT=S in its own environment (never set by the
  daemon, which starts the shim with an empty one), sleeps S seconds after the exit record.

The secret shapes are matched by hand, not with <regex.h>: POSIX regexes have no look-behind,
look-ahead or \b and pick the leftmost-longest match where Python picks the leftmost-first.
None of the three patterns needs backtracking (each repetition is followed by a character it
cannot match), so a direct scan finds exactly the matches of Python's `re`. The patterns, as
events/redact.py spells them (tests/runtimes/test_shim_masking.py checks that they still are,
and that this shim masks a corpus exactly as the Python shim does):

PATTERN URL_USERINFO (?<![a-zA-Z0-9+.-])(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]*://)(?P<user>[^:/@\s]*):(?P<pw>[^@\s/]+)@
PATTERN KEY_SHAPES \b(sk-ant-[A-Za-z0-9_-]{6,}|sk-[A-Za-z0-9_-]{20,}|gh[pousr]_[A-Za-z0-9]{20,})
PATTERN ASSIGNMENT (?<![A-Za-z0-9_.-])(?P<name>[A-Za-z0-9_.-]*(?:password|passwd|secret|token(?!s)|api[_-]?key)[A-Za-z0-9_]*)(?P<sep>\s*[=:]\s*)(?P<quote>[\"']?)(?P<value>[^\s\"',;&]+)
*/

#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#ifdef __linux__
#include <sys/prctl.h>
#endif

#define MIN_SECRET_LEN 6     /* as in events.redact: shorter values would mask ordinary words */
#define CHUNK (1 << 16)
#define TICK 0.1             /* seconds between checks of the child's state while it is quiet */
#define DRAIN_AFTER_EXIT 1.0 /* how long to wait for the pipe's end once the group is killed */
#define CLEANUP_TIMEOUT 5.0  /* how long to keep killing what is left once the child has ended */
#define MAX_HELD_LINE (1 << 16) /* an unfinished line longer than this is written to its last blank */

extern char **environ;

/* ---------------------------------------------------------------- small utilities */

typedef struct {
    char *data;
    size_t len, cap;
} Buf;

static void die(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fputs("forge-shim: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    exit(1);
}

static void buf_reserve(Buf *b, size_t extra) {
    if (b->len + extra <= b->cap)
        return;
    size_t cap = b->cap ? b->cap : 256;
    while (cap < b->len + extra)
        cap *= 2;
    char *data = realloc(b->data, cap);
    if (data == NULL)
        die("out of memory");
    b->data = data;
    b->cap = cap;
}

static void buf_add(Buf *b, const char *data, size_t len) {
    buf_reserve(b, len + 1);
    if (len)
        memcpy(b->data + b->len, data, len);
    b->len += len;
    b->data[b->len] = '\0';
}

static void buf_str(Buf *b, const char *s) { buf_add(b, s, strlen(s)); }

static void buf_fmt(Buf *b, const char *fmt, ...) {
    char tmp[128];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    buf_add(b, tmp, n < 0 ? 0 : (size_t)n < sizeof tmp ? (size_t)n : sizeof tmp - 1);
}

static double monotonic(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static double wall_clock(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void write_all(int fd, const char *data, size_t len) {
    while (len > 0) {
        ssize_t n = write(fd, data, len);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            die("cannot write: %s", strerror(errno));
        }
        data += n;
        len -= (size_t)n;
    }
}

static ssize_t read_file(const char *path, char *out, size_t size) {
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    size_t got = 0;
    while (got + 1 < size) {
        ssize_t n = read(fd, out + got, size - 1 - got);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        got += (size_t)n;
    }
    close(fd);
    out[got] = '\0';
    return (ssize_t)got;
}

/* ---------------------------------------------------------------- secret shapes */

static int is_alpha(unsigned char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); }
static int is_digit(unsigned char c) { return c >= '0' && c <= '9'; }
static int is_alnum(unsigned char c) { return is_alpha(c) || is_digit(c); }
static int is_word(unsigned char c) { return is_alnum(c) || c == '_'; } /* \w of a bytes pattern */
static int is_space(unsigned char c) { /* \s of a bytes pattern */
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
}
static int is_scheme(unsigned char c) { return is_alnum(c) || c == '+' || c == '.' || c == '-'; }
static int is_key(unsigned char c) { return is_word(c) || c == '-'; }
static int is_name(unsigned char c) { return is_word(c) || c == '.' || c == '-'; }
static int is_user(unsigned char c) { return c != ':' && c != '/' && c != '@' && !is_space(c); }
static int is_pw(unsigned char c) { return c != '@' && c != '/' && !is_space(c); }
static int is_value(unsigned char c) {
    return !is_space(c) && c != '"' && c != '\'' && c != ',' && c != ';' && c != '&';
}
static unsigned char lower(unsigned char c) { return c >= 'A' && c <= 'Z' ? c + 32 : c; }

static size_t run_of(const unsigned char *s, size_t at, size_t n, int (*in)(unsigned char)) {
    size_t end = at;
    while (end < n && in(s[end]))
        end++;
    return end;
}

/* A match at `at`: the text kept is [at, keep), then the mask, then the scan goes on at `end`. */
typedef struct {
    size_t keep, end;
} Match;

typedef int (*Matcher)(const unsigned char *s, size_t n, size_t at, Match *m);

static int match_url_userinfo(const unsigned char *s, size_t n, size_t at, Match *m) {
    if ((at > 0 && is_scheme(s[at - 1])) || at >= n || !is_alpha(s[at]))
        return 0;
    size_t i = run_of(s, at + 1, n, is_scheme);
    if (n - i < 3 || memcmp(s + i, "://", 3) != 0)
        return 0;
    i = run_of(s, i + 3, n, is_user);
    if (i >= n || s[i] != ':')
        return 0;
    size_t pw = i + 1, end = run_of(s, pw, n, is_pw);
    if (end == pw || end >= n || s[end] != '@')
        return 0;
    m->keep = pw; /* scheme, user and ':' stay; the password goes; '@' follows the mask */
    m->end = end;
    return 1;
}

static int match_key_shapes(const unsigned char *s, size_t n, size_t at, Match *m) {
    if (at > 0 && is_word(s[at - 1]))
        return 0; /* \b before a word character */
    if (n - at >= 3 && memcmp(s + at, "sk-", 3) == 0) {
        size_t end = run_of(s, at + 3, n, is_key);
        int ant = n - at >= 7 && memcmp(s + at, "sk-ant-", 7) == 0 && end - (at + 7) >= 6;
        if (ant || end - (at + 3) >= 20) {
            m->keep = at;
            m->end = end;
            return 1;
        }
        return 0;
    }
    if (n - at >= 4 && s[at] == 'g' && s[at + 1] == 'h' && s[at + 2] != '\0' &&
        strchr("pousr", s[at + 2]) && s[at + 3] == '_') {
        size_t end = run_of(s, at + 4, n, is_alnum);
        if (end - (at + 4) >= 20) {
            m->keep = at;
            m->end = end;
            return 1;
        }
    }
    return 0;
}

static int word_at(const unsigned char *s, size_t n, size_t at, const char *word) {
    size_t len = strlen(word);
    if (n - at < len)
        return 0;
    for (size_t i = 0; i < len; i++)
        if (lower(s[at + i]) != (unsigned char)word[i])
            return 0;
    return 1;
}

/* The end of a secret-naming word (password|passwd|secret|token(?!s)|api[_-]?key) at `at`, or 0. */
static size_t keyword_end(const unsigned char *s, size_t n, size_t at) {
    static const char *words[] = {"password", "passwd", "secret"};
    for (size_t w = 0; w < 3; w++)
        if (word_at(s, n, at, words[w]))
            return at + strlen(words[w]);
    if (word_at(s, n, at, "token") && !(at + 5 < n && lower(s[at + 5]) == 's'))
        return at + 5;
    if (word_at(s, n, at, "api")) {
        size_t i = at + 3;
        if (i < n && (s[i] == '_' || s[i] == '-') && word_at(s, n, i + 1, "key"))
            return i + 4;
        if (word_at(s, n, i, "key"))
            return i + 3;
    }
    return 0;
}

static int match_assignment(const unsigned char *s, size_t n, size_t at, Match *m) {
    if (at > 0 && is_name(s[at - 1]))
        return 0;
    /* The name is the whole run of name characters from `at`: what follows it must be a
       blank, '=' or ':', none of which is a name character. It qualifies if a keyword in it is
       followed by word characters only, up to the run's end. */
    size_t name_end = run_of(s, at, n, is_name);
    int named = 0;
    for (size_t k = at; k < name_end && !named; k++) {
        size_t e = keyword_end(s, name_end, k);
        named = e != 0 && run_of(s, e, name_end, is_word) == name_end;
    }
    if (!named)
        return 0;
    size_t i = run_of(s, name_end, n, is_space);
    if (i >= n || (s[i] != '=' && s[i] != ':'))
        return 0;
    i = run_of(s, i + 1, n, is_space);
    if (i < n && (s[i] == '"' || s[i] == '\''))
        i++;
    size_t end = run_of(s, i, n, is_value);
    if (end == i)
        return 0;
    m->keep = i;
    m->end = end;
    return 1;
}

/* One `re.sub` pass: every non-overlapping match, left to right, replaced in `out`. */
static void substitute(const unsigned char *s, size_t n, Matcher match, const char *after, Buf *out) {
    size_t copied = 0, at = 0;
    Match m;
    out->len = 0;
    buf_reserve(out, n + 1);
    while (at < n) {
        if (!match(s, n, at, &m)) {
            at++;
            continue;
        }
        buf_add(out, (const char *)s + copied, m.keep - copied);
        buf_str(out, "***");
        buf_str(out, after);
        at = copied = m.end + strlen(after);
    }
    buf_add(out, (const char *)s + copied, n - copied);
}

/* `data` with every secret shape masked, as events.redact masks text (the result in `a`). */
static void mask_shapes(const char *data, size_t len, Buf *a, Buf *b) {
    substitute((const unsigned char *)data, len, match_url_userinfo, "@", a);
    substitute((const unsigned char *)a->data, a->len, match_key_shapes, "", b);
    substitute((const unsigned char *)b->data, b->len, match_assignment, "", a);
}

/* ---------------------------------------------------------------- maskers */

typedef struct {
    char **values; /* longest first */
    size_t *lens;
    size_t count;
    Buf held;
} Masker;

static void masker_init(Masker *mk, char **values, size_t count) {
    mk->values = calloc(count + 1, sizeof *mk->values);
    mk->lens = calloc(count + 1, sizeof *mk->lens);
    mk->count = 0;
    memset(&mk->held, 0, sizeof mk->held);
    for (size_t i = 0; i < count; i++) {
        size_t len = strlen(values[i]), at = 0;
        int seen = 0;
        for (size_t j = 0; j < mk->count; j++)
            seen |= strcmp(mk->values[j], values[i]) == 0;
        if (len < MIN_SECRET_LEN || seen)
            continue;
        while (at < mk->count && mk->lens[at] >= len)
            at++;
        memmove(mk->values + at + 1, mk->values + at, (mk->count - at) * sizeof *mk->values);
        memmove(mk->lens + at + 1, mk->lens + at, (mk->count - at) * sizeof *mk->lens);
        mk->values[at] = values[i];
        mk->lens[at] = len;
        mk->count++;
    }
}

static void replace_all(Buf *in, const char *needle, size_t nlen, Buf *out) {
    out->len = 0;
    buf_reserve(out, in->len + 1);
    size_t at = 0;
    while (at < in->len) {
        char *hit = memmem(in->data + at, in->len - at, needle, nlen);
        if (hit == NULL)
            break;
        buf_add(out, in->data + at, (size_t)(hit - in->data) - at);
        buf_str(out, "***");
        at = (size_t)(hit - in->data) + nlen;
    }
    buf_add(out, in->data + at, in->len - at);
}

/* Mask what can be masked now into `out`; hold back a tail that may start a secret. */
static void masker_feed(Masker *mk, const char *data, size_t len, Buf *out) {
    if (mk->count == 0) {
        out->len = 0;
        buf_add(out, data, len);
        return;
    }
    Buf tmp = {0};
    buf_add(&mk->held, data, len);
    for (size_t i = 0; i < mk->count; i++) {
        replace_all(&mk->held, mk->values[i], mk->lens[i], &tmp);
        Buf swap = mk->held;
        mk->held = tmp;
        tmp = swap;
    }
    free(tmp.data);
    size_t longest = 0, n = mk->held.len;
    for (size_t i = 0; i < mk->count; i++) {
        size_t most = mk->lens[i] - 1 < n ? mk->lens[i] - 1 : n;
        for (size_t size = most; size > longest; size--)
            if (memcmp(mk->held.data + n - size, mk->values[i], size) == 0) {
                longest = size;
                break;
            }
    }
    out->len = 0;
    buf_add(out, mk->held.data, n - longest);
    memmove(mk->held.data, mk->held.data + n - longest, longest);
    mk->held.len = longest;
}

static void masker_flush(Masker *mk, Buf *out) {
    out->len = 0;
    buf_add(out, mk->held.data, mk->held.len);
    mk->held.len = 0;
}

typedef struct {
    Buf held, a, b;
} ShapeMasker;

static ssize_t last_of(const char *s, size_t from, size_t n, char c) {
    for (size_t i = n; i > from; i--)
        if (s[i - 1] == c)
            return (ssize_t)(i - 1);
    return -1;
}

/* Mask secret shapes line by line: an unfinished line waits for its end (or a blank). The
   masked text is appended to `log` (written by the caller). */
static void shapes_feed(ShapeMasker *sm, const char *data, size_t len, Buf *log) {
    buf_add(&sm->held, data, len);
    char *buf = sm->held.data;
    size_t n = sm->held.len, cut = (size_t)(last_of(buf, 0, n, '\n') + 1);
    if (n - cut > MAX_HELD_LINE) {
        ssize_t space = last_of(buf, cut, n, ' '), tab = last_of(buf, cut, n, '\t');
        ssize_t blank = space > tab ? space : tab;
        cut = blank >= 0 ? (size_t)blank + 1 : n;
    }
    if (cut == 0)
        return;
    mask_shapes(buf, cut, &sm->a, &sm->b);
    buf_add(log, sm->a.data, sm->a.len);
    memmove(buf, buf + cut, n - cut);
    sm->held.len = n - cut;
}

static void shapes_flush(ShapeMasker *sm, Buf *log) {
    if (sm->held.len == 0)
        return;
    mask_shapes(sm->held.data, sm->held.len, &sm->a, &sm->b);
    buf_add(log, sm->a.data, sm->a.len);
    sm->held.len = 0;
}

/* ---------------------------------------------------------------- the environment (JSON) */

typedef struct {
    const char *s;
    size_t at, len;
} Json;

static void json_space(Json *j) {
    while (j->at < j->len && strchr(" \t\r\n", j->s[j->at]) && j->s[j->at])
        j->at++;
}

static int hex4(Json *j, unsigned *out) {
    if (j->len - j->at < 4)
        return 0;
    unsigned v = 0;
    for (int i = 0; i < 4; i++) {
        char c = j->s[j->at++];
        v <<= 4;
        if (c >= '0' && c <= '9')
            v |= (unsigned)(c - '0');
        else if (c >= 'a' && c <= 'f')
            v |= (unsigned)(c - 'a' + 10);
        else if (c >= 'A' && c <= 'F')
            v |= (unsigned)(c - 'A' + 10);
        else
            return 0;
    }
    *out = v;
    return 1;
}

static void put_utf8(Buf *b, unsigned cp) {
    char u[4];
    size_t n;
    if (cp >= 0xDC80 && cp <= 0xDCFF) { /* a byte Python decoded with surrogateescape */
        u[0] = (char)(cp - 0xDC00);
        n = 1;
    } else if (cp < 0x80) {
        u[0] = (char)cp;
        n = 1;
    } else if (cp < 0x800) {
        u[0] = (char)(0xC0 | cp >> 6);
        u[1] = (char)(0x80 | (cp & 0x3F));
        n = 2;
    } else if (cp < 0x10000) {
        u[0] = (char)(0xE0 | cp >> 12);
        u[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        u[2] = (char)(0x80 | (cp & 0x3F));
        n = 3;
    } else {
        u[0] = (char)(0xF0 | cp >> 18);
        u[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
        u[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
        u[3] = (char)(0x80 | (cp & 0x3F));
        n = 4;
    }
    buf_add(b, u, n);
}

/* A JSON string at j->at into `out` (NUL bytes kept: the caller rejects them). */
static int json_string(Json *j, Buf *out) {
    out->len = 0;
    buf_reserve(out, 1);
    out->data[0] = '\0';
    if (j->at >= j->len || j->s[j->at] != '"')
        return 0;
    j->at++;
    while (j->at < j->len) {
        char c = j->s[j->at++];
        if (c == '"')
            return 1;
        if (c != '\\') {
            buf_add(out, &c, 1);
            continue;
        }
        if (j->at >= j->len)
            return 0;
        char e = j->s[j->at++];
        const char *plain = strchr("\"\\/bfnrt", e);
        if (plain != NULL && e != '\0') {
            static const char as[] = "\"\\/\b\f\n\r\t";
            buf_add(out, &as[plain - "\"\\/bfnrt"], 1);
        } else if (e == 'u') {
            unsigned cp, low;
            if (!hex4(j, &cp))
                return 0;
            if (cp >= 0xD800 && cp < 0xDC00 && j->len - j->at >= 6 && j->s[j->at] == '\\' &&
                j->s[j->at + 1] == 'u') {
                size_t back = j->at;
                j->at += 2;
                if (hex4(j, &low) && low >= 0xDC00 && low < 0xE000)
                    cp = 0x10000 + ((cp - 0xD800) << 10) + (low - 0xDC00);
                else
                    j->at = back;
            }
            put_utf8(out, cp);
        } else {
            return 0;
        }
    }
    return 0;
}

/* The environment sent as a JSON object of strings on stdin, as a NULL-ended "K=V" array;
   `bad` is set when a name or value cannot be in an environment (a NUL, '=' in a name). */
static char **read_env(int *bad) {
    Buf in = {0}, key = {0}, value = {0};
    char chunk[CHUNK];
    ssize_t n;
    while ((n = read(0, chunk, sizeof chunk)) != 0) {
        if (n < 0) {
            if (errno == EINTR)
                continue;
            die("cannot read the environment: %s", strerror(errno));
        }
        buf_add(&in, chunk, (size_t)n);
    }
    Json j = {in.data ? in.data : "", 0, in.len};
    size_t count = 0, cap = 16;
    char **env = calloc(cap, sizeof *env);
    json_space(&j);
    if (j.at >= j.len || j.s[j.at++] != '{')
        die("the environment on stdin is not a JSON object");
    json_space(&j);
    if (j.at < j.len && j.s[j.at] == '}')
        j.at++;
    else
        for (;;) {
            json_space(&j);
            if (!json_string(&j, &key))
                die("bad JSON environment");
            json_space(&j);
            if (j.at >= j.len || j.s[j.at++] != ':')
                die("bad JSON environment");
            json_space(&j);
            if (!json_string(&j, &value))
                die("bad JSON environment: values must be strings");
            if (memchr(key.data, '\0', key.len) || memchr(value.data, '\0', value.len) ||
                memchr(key.data, '=', key.len) || key.len == 0)
                *bad = 1;
            if (count + 2 > cap)
                env = realloc(env, (cap *= 2) * sizeof *env);
            char *entry = malloc(key.len + value.len + 2);
            memcpy(entry, key.data, key.len);
            entry[key.len] = '=';
            memcpy(entry + key.len + 1, value.data, value.len);
            entry[key.len + 1 + value.len] = '\0';
            env[count++] = entry;
            json_space(&j);
            if (j.at < j.len && j.s[j.at] == ',') {
                j.at++;
                continue;
            }
            if (j.at < j.len && j.s[j.at] == '}') {
                j.at++;
                break;
            }
            die("bad JSON environment");
        }
    env[count] = NULL;
    free(in.data);
    free(key.data);
    free(value.data);
    return env;
}

static const char *env_get(char **env, const char *name) {
    size_t len = strlen(name);
    for (char **e = env; *e; e++)
        if (strncmp(*e, name, len) == 0 && (*e)[len] == '=')
            return *e + len + 1;
    return NULL;
}

/* ---------------------------------------------------------------- options */

typedef struct {
    const char *status, *log, *record, *exit_record, *cwd;
    double timeout, grace;
    int has_timeout, env_stdin;
    const char **mask_env;
    size_t mask_count;
    char **argv;
} Options;

static void usage(const char *why) {
    fprintf(stderr,
            "usage: forge-shim --status STATUS --log LOG [--record FILE] [--exit-record FILE] "
            "[--cwd DIR] [--timeout S] [--grace S] [--mask-env NAME] [--env-stdin] -- argv...\n"
            "forge-shim: error: %s\n",
            why);
    exit(2);
}

static double number(const char *text) {
    char *end;
    errno = 0;
    double v = strtod(text, &end);
    while (*end == ' ' || *end == '\t' || *end == '\n')
        end++;
    if (errno == ERANGE && v == 0)
        errno = 0;
    if (end == text || *end != '\0' || errno)
        usage("invalid number");
    return v;
}

static void parse_args(int argc, char **argv, Options *o) {
    memset(o, 0, sizeof *o);
    o->grace = 5.0;
    o->mask_env = calloc((size_t)argc + 1, sizeof *o->mask_env);
    int i = 1;
    for (; i < argc; i++) {
        const char *arg = argv[i], *value = NULL;
        if (strcmp(arg, "--") == 0) {
            i++;
            break;
        }
        if (strcmp(arg, "--env-stdin") == 0) {
            o->env_stdin = 1;
            continue;
        }
        if (strncmp(arg, "--", 2) != 0) /* the command starts without "--" (as argparse allows) */
            break;
        size_t name_len = strcspn(arg, "=");
        if (arg[name_len] == '=')
            value = arg + name_len + 1;
        else if (i + 1 < argc)
            value = argv[++i];
        else
            usage("an option needs a value");
#define OPT(NAME) (name_len == strlen(NAME) && strncmp(arg, NAME, name_len) == 0)
        if (OPT("--status"))
            o->status = value;
        else if (OPT("--log"))
            o->log = value;
        else if (OPT("--record"))
            o->record = value;
        else if (OPT("--exit-record"))
            o->exit_record = value;
        else if (OPT("--cwd"))
            o->cwd = value;
        else if (OPT("--timeout")) {
            o->timeout = number(value);
            o->has_timeout = 1;
        } else if (OPT("--grace"))
            o->grace = number(value);
        else if (OPT("--mask-env"))
            o->mask_env[o->mask_count++] = value;
        else
            usage("unrecognized argument");
#undef OPT
    }
    if (o->status == NULL || o->log == NULL)
        usage("the following arguments are required: --status, --log");
    if (i >= argc)
        usage("no command given after --");
    o->argv = argv + i;
}

/* ---------------------------------------------------------------- processes */

static volatile sig_atomic_t stop_signal = 0;
static volatile pid_t child_pid = 0;
static int wake_read = -1, wake_write = -1;

static void signal_group(int signum) {
    if (child_pid > 0)
        killpg(child_pid, signum);
}

static void on_forwarded(int signum) {
    int saved = errno;
    stop_signal = signum;
    signal_group(signum);
    if (write(wake_write, "", 1) < 0) { /* full: a wake-up is pending anyway */
    }
    errno = saved;
}

static void on_child(int signum) {
    (void)signum;
    int saved = errno;
    if (write(wake_write, "", 1) < 0) {
    }
    errno = saved;
}

static void drain_wakeups(void) {
    char junk[512];
    while (read(wake_read, junk, sizeof junk) > 0) {
    }
}

static void become_subreaper(void) {
#ifdef __linux__
    prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0);
#endif
}

/* The command stops when its shim dies (a parent-death SIGSTOP): a command whose shim was killed
   while nobody watched (the daemon down, or cut off from the log) would otherwise run on to its
   end unseen, and the retry of its attempt run it a second time. Stopped, not killed, so that
   it stays the parent of what it started: the daemon finds the whole tree through the shim's
   record and kills it (forge/runtimes/tree.py). */
static void stop_with_the_shim(pid_t shim) {
#ifdef __linux__
    prctl(PR_SET_PDEATHSIG, SIGSTOP, 0, 0, 0);
    if (getppid() != shim) /* it died before the signal was armed */
        raise(SIGSTOP);
#else
    (void)shim;
#endif
}

/* The fields of /proc/PID/stat from the state on: fields[0] state, [1] ppid, [19] start ticks. */
static int proc_stat(pid_t pid, char *state, long *ppid, unsigned long long *ticks) {
    char path[64], data[1024];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    if (read_file(path, data, sizeof data) <= 0)
        return 0;
    char *p = strrchr(data, ')');
    if (p == NULL || p[1] == '\0')
        return 0;
    p += 2;
    char *save = NULL;
    int field = 0;
    for (char *tok = strtok_r(p, " \n", &save); tok; tok = strtok_r(NULL, " \n", &save), field++) {
        if (field == 0 && state)
            *state = tok[0];
        else if (field == 1 && ppid)
            *ppid = strtol(tok, NULL, 10);
        else if (field == 19) {
            if (ticks)
                *ticks = strtoull(tok, NULL, 10);
            return 1;
        }
    }
    return 0;
}

/* The PIDs of this (single-threaded) process's children; returns their count. */
static size_t children_of_self(pid_t **out) {
    static pid_t *pids = NULL;
    static size_t cap = 0;
    size_t count = 0;
    pid_t self = getpid();
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/task/%d/children", (int)self, (int)self);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd >= 0) {
        Buf text = {0};
        char chunk[4096];
        ssize_t n;
        while ((n = read(fd, chunk, sizeof chunk)) > 0)
            buf_add(&text, chunk, (size_t)n);
        close(fd);
        char *p = text.data ? text.data : (char *)"";
        for (;;) {
            char *end;
            long pid = strtol(p, &end, 10);
            if (end == p)
                break;
            if (count == cap)
                pids = realloc(pids, (cap = cap ? cap * 2 : 16) * sizeof *pids);
            pids[count++] = (pid_t)pid;
            p = end;
        }
        free(text.data);
    } else if (errno == ENOENT) { /* a kernel without CONFIG_PROC_CHILDREN: scan every process */
        DIR *dir = opendir("/proc");
        struct dirent *entry;
        while (dir && (entry = readdir(dir)) != NULL) {
            char *end;
            long pid = strtol(entry->d_name, &end, 10);
            long ppid;
            if (*end != '\0' || end == entry->d_name || !proc_stat((pid_t)pid, NULL, &ppid, NULL) ||
                ppid != self)
                continue;
            if (count == cap)
                pids = realloc(pids, (cap = cap ? cap * 2 : 16) * sizeof *pids);
            pids[count++] = (pid_t)pid;
        }
        if (dir)
            closedir(dir);
    }
    *out = pids;
    return count;
}

typedef struct {
    long long pid, ticks;
} Child;

static int by_pid(const void *a, const void *b) {
    const Child *x = a, *y = b;
    return x->pid < y->pid ? -1 : x->pid > y->pid ? 1 : x->ticks < y->ticks ? -1 : x->ticks > y->ticks;
}

static Options opts;
static Buf recorded = {0}; /* the record file's last content */
static int have_recorded = 0;

/* Write `path` atomically (a temporary file, then rename): 0, or -1 with errno set. */
static int try_replace_file(const char *path, const char *data, size_t len, mode_t mode) {
    Buf tmp = {0};
    buf_str(&tmp, path);
    buf_str(&tmp, ".tmp");
    int fd = open(tmp.data, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode), ok = fd >= 0;
    while (ok && len > 0) {
        ssize_t n = write(fd, data, len);
        if (n < 0 && errno == EINTR)
            continue;
        ok = n > 0;
        if (ok) {
            data += n;
            len -= (size_t)n;
        }
    }
    int saved = errno;
    if (fd >= 0)
        close(fd);
    if (ok && rename(tmp.data, path) != 0) {
        ok = 0;
        saved = errno;
    }
    free(tmp.data);
    errno = saved;
    return ok ? 0 : -1;
}

static void replace_file(const char *path, const char *data, size_t len, mode_t mode) {
    if (try_replace_file(path, data, len, mode) != 0)
        die("cannot write %s: %s", path, strerror(errno));
}

/* Reap ended orphans; write the shim's children (PID, start ticks) when they change. */
static void record_children(void) {
    pid_t *pids;
    size_t count = children_of_self(&pids), kept = 0;
    Child *list = calloc(count + 1, sizeof *list);
    for (size_t i = 0; i < count; i++) {
        char state;
        unsigned long long ticks;
        if (!proc_stat(pids[i], &state, NULL, &ticks))
            continue;
        if (state == 'Z' && child_pid > 0 && pids[i] != child_pid) {
            waitpid(pids[i], NULL, WNOHANG); /* a daemonized process that ended */
            continue;
        }
        list[kept].pid = pids[i];
        list[kept++].ticks = (long long)ticks;
    }
    qsort(list, kept, sizeof *list, by_pid);
    Buf text = {0};
    buf_str(&text, "[");
    for (size_t i = 0; i < kept; i++)
        buf_fmt(&text, "%s[%lld, %lld]", i ? ", " : "", list[i].pid, list[i].ticks);
    buf_str(&text, "]");
    free(list);
    if (opts.record == NULL ||
        (have_recorded && recorded.len == text.len && memcmp(recorded.data, text.data, text.len) == 0)) {
        free(text.data);
        return;
    }
    replace_file(opts.record, text.data, text.len, 0666);
    free(recorded.data);
    recorded = text;
    have_recorded = 1;
}

/* SIGKILL the child's group and every process reparented to the shim, until none is left
   (killing one reparents its own children to the shim: the next round gets them). */
static void kill_leftovers(void) {
    double deadline = monotonic() + CLEANUP_TIMEOUT;
    pid_t own_group = getpgrp();
    for (;;) {
        signal_group(SIGKILL);
        pid_t *pids;
        size_t count = children_of_self(&pids);
        if (count == 0 || monotonic() >= deadline)
            return;
        for (size_t i = 0; i < count; i++) {
            pid_t group = getpgid(pids[i]);
            if (group >= 0 && group != own_group)
                killpg(group, SIGKILL);
            kill(pids[i], SIGKILL);
        }
        int reaped = 0;
        while (waitpid(-1, NULL, WNOHANG) > 0)
            reaped = 1;
        if (!reaped) { /* wait for the next SIGCHLD (or a tick) */
            struct pollfd p = {wake_read, POLLIN, 0};
            poll(&p, 1, (int)(TICK * 1000));
            drain_wakeups();
        }
    }
}

/* ---------------------------------------------------------------- spawning */

/* argv[0] as Python's repr() of a str shows it (bytes that are not UTF-8 as \xNN). */
static void repr(Buf *b, const char *s) {
    char quote = strchr(s, '\'') && !strchr(s, '"') ? '"' : '\'';
    buf_add(b, &quote, 1);
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        unsigned char c = *p;
        if (c == '\\' || c == (unsigned char)quote)
            buf_fmt(b, "\\%c", c);
        else if (c == '\n')
            buf_str(b, "\\n");
        else if (c == '\r')
            buf_str(b, "\\r");
        else if (c == '\t')
            buf_str(b, "\\t");
        else if (c < 0x20 || c == 0x7f)
            buf_fmt(b, "\\x%02x", c);
        else
            buf_add(b, (const char *)&c, 1);
    }
    buf_add(b, &quote, 1);
}

static void json_str(Buf *b, const char *s) {
    buf_str(b, "\"");
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        unsigned char c = *p;
        size_t seq = c < 0x80 ? 1 : (c & 0xE0) == 0xC0 ? 2 : (c & 0xF0) == 0xE0 ? 3 : (c & 0xF8) == 0xF0 ? 4 : 0;
        int valid = seq > 1;
        for (size_t k = 1; valid && k < seq; k++)
            valid = (p[k] & 0xC0) == 0x80;
        if (c == '"' || c == '\\')
            buf_fmt(b, "\\%c", c);
        else if (c < 0x20)
            buf_fmt(b, "\\u%04x", c);
        else if (c < 0x80)
            buf_add(b, (const char *)&c, 1);
        else if (valid) {
            buf_add(b, (const char *)p, seq);
            p += seq - 1;
        } else
            buf_fmt(b, "\\\\x%02x", c); /* not UTF-8: shown, never an unreadable status */
    }
    buf_str(b, "\"");
}

/* What the child reports through the CLOEXEC pipe when it cannot exec. */
typedef struct {
    int err;
    int in_chdir;
} SpawnFailure;

static void exec_command(char **argv, char **env) {
    const char *file = argv[0];
    if (strchr(file, '/')) {
        execve(file, argv, env);
        return;
    }
    const char *path = env_get(env, "PATH");
    if (path == NULL)
        path = "/bin:/usr/bin"; /* os.defpath */
    int saved = 0;
    Buf full = {0};
    for (const char *dir = path;; dir++) {
        const char *end = strchr(dir, ':');
        size_t len = end ? (size_t)(end - dir) : strlen(dir);
        full.len = 0;
        buf_add(&full, dir, len);
        if (len)
            buf_str(&full, "/");
        buf_str(&full, file);
        execve(full.data, argv, env);
        if (errno != ENOENT && errno != ENOTDIR && saved == 0)
            saved = errno;
        if (end == NULL)
            break;
        dir = end;
    }
    if (saved)
        errno = saved;
}

/* Start the command; on failure returns 0 and describes why in `error`. */
static pid_t spawn(char **env, int out_write, Buf *error) {
    const char *cwd = opts.cwd;
    struct stat st;
    if (cwd != NULL && (stat(cwd, &st) != 0 || !S_ISDIR(st.st_mode))) {
        buf_str(error, "cannot start ");
        repr(error, opts.argv[0]);
        buf_str(error, ": no such directory: ");
        buf_str(error, cwd);
        return 0;
    }
    int report[2];
    if (pipe2(report, O_CLOEXEC) != 0)
        die("pipe: %s", strerror(errno));
    sigset_t all, old;
    sigfillset(&all);
    sigprocmask(SIG_BLOCK, &all, &old);
    pid_t shim = getpid();
    pid_t pid = fork();
    if (pid == 0) {
        SpawnFailure failure = {0, 0};
        struct sigaction dfl;
        memset(&dfl, 0, sizeof dfl);
        dfl.sa_handler = SIG_DFL;
        for (int s = 1; s < NSIG; s++)
            sigaction(s, &dfl, NULL);
        sigset_t none;
        sigemptyset(&none);
        sigprocmask(SIG_SETMASK, &none, NULL);
        setpgid(0, 0);
        become_subreaper();
        stop_with_the_shim(shim);
        int devnull = open("/dev/null", O_RDONLY | O_CLOEXEC);
        if (devnull < 0 || dup2(devnull, 0) < 0 || dup2(out_write, 1) < 0 || dup2(out_write, 2) < 0) {
            failure.err = errno;
        } else if (cwd != NULL && chdir(cwd) != 0) {
            failure.err = errno;
            failure.in_chdir = 1;
        } else {
            exec_command(opts.argv, env);
            failure.err = errno;
        }
        if (write(report[1], &failure, sizeof failure) < 0) {
        }
        _exit(127);
    }
    int fork_errno = errno;
    if (pid > 0) {
        setpgid(pid, pid); /* as the child does: the group exists as soon as fork returns */
        child_pid = pid;
    }
    sigprocmask(SIG_SETMASK, &old, NULL);
    close(report[1]);
    SpawnFailure failure = {0, 0};
    ssize_t got = 0;
    if (pid < 0) {
        failure.err = fork_errno;
        got = sizeof failure;
    } else {
        do
            got = read(report[0], &failure, sizeof failure);
        while (got < 0 && errno == EINTR);
    }
    close(report[0]);
    if (got != (ssize_t)sizeof failure)
        return pid; /* exec'd */
    if (pid > 0) {
        child_pid = 0;
        waitpid(pid, NULL, 0);
    }
    buf_str(error, "cannot start ");
    repr(error, opts.argv[0]);
    buf_str(error, ": ");
    buf_str(error, strerror(failure.err));
    buf_str(error, ": ");
    buf_str(error, failure.in_chdir ? cwd : opts.argv[0]);
    return 0;
}

/* ---------------------------------------------------------------- the attempt */

static double started_at;
static int timed_out = 0;

/* The JSON of the status file (and of the exit record), ended now. */
static void report(Buf *j, int exited, int exit_code, int killed_by, const char *error) {
    buf_fmt(j, "{\"pid\": %d, \"exit_code\": ", (int)getpid());
    if (exited)
        buf_fmt(j, "%d", exit_code);
    else
        buf_str(j, "null");
    if (killed_by)
        buf_fmt(j, ", \"signal\": %d", killed_by);
    else
        buf_str(j, ", \"signal\": null");
    buf_fmt(j, ", \"timed_out\": %s, \"stop_signal\": ", timed_out ? "true" : "false");
    if (stop_signal)
        buf_fmt(j, "%d", (int)stop_signal);
    else
        buf_str(j, "null");
    buf_fmt(j, ", \"started_at\": %.6f, \"ended_at\": %.6f, \"spawn_error\": ", started_at, wall_clock());
    if (error)
        json_str(j, error);
    else
        buf_str(j, "null");
    buf_str(j, "}");
}

/* How the child ended, on disk before anything else happens (see the comment at the top). */
static void write_exit_record(int status) {
    if (opts.exit_record == NULL)
        return;
    Buf j = {0};
    if (WIFSIGNALED(status))
        report(&j, 0, 0, WTERMSIG(status), NULL);
    else
        report(&j, 1, WEXITSTATUS(status), 0, NULL);
    if (try_replace_file(opts.exit_record, j.data, j.len, 0600) != 0) /* the status follows */
        fprintf(stderr, "forge-shim: cannot write %s: %s\n", opts.exit_record, strerror(errno));
    free(j.data);
    const char *hold = getenv("FORGE_SHIM_TEST_HOLD_AFTER_EXIT");
    double seconds = hold ? strtod(hold, NULL) : 0;
    if (seconds > 0) {
        struct timespec ts = {(time_t)seconds, (long)((seconds - (double)(time_t)seconds) * 1e9)};
        while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
        }
    }
}

static int finish(int exited, int exit_code, int killed_by, const char *error) {
    Buf j = {0};
    report(&j, exited, exit_code, killed_by, error);
    replace_file(opts.status, j.data, j.len, 0600);
    if (opts.record != NULL)
        unlink(opts.record); /* the status says it all now */
    if (opts.exit_record != NULL)
        unlink(opts.exit_record);
    if (error)
        return 127;
    return exited ? exit_code : 128 + killed_by;
}

typedef struct {
    int has_deadline, stopped;
    double deadline, stopped_since;
} Clock;

/* Reap the child if it ended; track SIGSTOP/SIGCONT so that paused time is not counted. */
static int poll_child(pid_t pid, int *status, Clock *c) {
    for (;;) {
        int st;
        pid_t got = waitpid(pid, &st, WNOHANG | WUNTRACED | WCONTINUED);
        if (got <= 0)
            return 0;
        if (WIFSTOPPED(st)) {
            if (!c->stopped) {
                c->stopped = 1;
                c->stopped_since = monotonic();
            }
        } else if (WIFCONTINUED(st)) {
            if (c->stopped && c->has_deadline)
                c->deadline += monotonic() - c->stopped_since;
            c->stopped = 0;
        } else {
            *status = st;
            c->stopped = 0;
            return 1;
        }
    }
}

static void log_masked(int log, Masker *mk, ShapeMasker *sm, const char *data, size_t len, int end) {
    static Buf masked = {0}, out = {0};
    out.len = 0;
    if (end) { /* shapes.feed(masker.flush()) + shapes.flush() */
        masker_flush(mk, &masked);
        shapes_feed(sm, masked.data, masked.len, &out);
        shapes_flush(sm, &out);
    } else {
        masker_feed(mk, data, len, &masked);
        shapes_feed(sm, masked.data, masked.len, &out);
    }
    write_all(log, out.data, out.len);
}

/* Copy the output, enforce the timeout, reap the child; returns its wait status. */
static int supervise(int log, int pipe_fd, Masker *mk, ShapeMasker *sm) {
    static char chunk[CHUNK];
    pid_t pid = child_pid;
    Clock clock = {opts.has_timeout, 0, opts.has_timeout ? monotonic() + opts.timeout : 0, 0};
    int has_kill_at = 0, known = 0, status = 0, draining = 0;
    double kill_at = 0, drain_until = 0, last_check = 0;
    while (pipe_fd >= 0 || !known) {
        double now = monotonic(), wait = TICK;
        if (clock.has_deadline && !clock.stopped) {
            wait = clock.deadline - now < TICK ? clock.deadline - now : TICK;
            wait = wait > 0 ? wait : 0;
        }
        struct pollfd fds[2] = {{wake_read, POLLIN, 0}, {pipe_fd, POLLIN, 0}};
        int ready = poll(fds, pipe_fd >= 0 ? 2 : 1, (int)(wait * 1000 + 0.999));
        if (ready < 0) {
            if (errno != EINTR)
                die("poll: %s", strerror(errno));
            ready = 0;
            fds[0].revents = POLLIN; /* a signal: look now */
        }
        if (fds[0].revents) {
            drain_wakeups();
            last_check = 0; /* a child stopped, continued or ended: look now */
        }
        if (pipe_fd >= 0 && fds[1].revents) {
            ssize_t n = read(pipe_fd, chunk, sizeof chunk);
            if (n > 0)
                log_masked(log, mk, sm, chunk, (size_t)n, 0);
            else if (n == 0 || (errno != EINTR && errno != EAGAIN)) {
                close(pipe_fd); /* closed by every writer; keep supervising the child */
                pipe_fd = -1;
            }
        }
        now = monotonic();
        if (ready > 0 && now - last_check < TICK)
            continue; /* busy output: check the child's state once per tick only */
        last_check = now;
        if (!known) {
            if (poll_child(pid, &status, &clock)) {
                known = 1;
                write_exit_record(status);
                /* the child is gone: its background and daemonized processes go with it */
                kill_leftovers();
                draining = 1;
                drain_until = monotonic() + DRAIN_AFTER_EXIT;
                continue;
            }
            record_children();
        } else if (draining && now >= drain_until) {
            break; /* a process outside the group holds the pipe open: stop waiting */
        }
        if (clock.has_deadline && now >= clock.deadline && !clock.stopped) {
            timed_out = 1;
            clock.has_deadline = 0;
            has_kill_at = 1;
            kill_at = now + opts.grace;
            signal_group(SIGTERM);
        }
        if (has_kill_at && now >= kill_at) {
            has_kill_at = 0;
            signal_group(SIGKILL);
        }
    }
    if (pipe_fd >= 0)
        close(pipe_fd);
    log_masked(log, mk, sm, NULL, 0, 1);
    return status;
}

int main(int argc, char **argv) {
    started_at = wall_clock();
    parse_args(argc, argv, &opts);
    char **env = environ;
    int bad_env = 0;
    if (opts.env_stdin) {
        env = read_env(&bad_env);
        int devnull = open("/dev/null", O_RDONLY);
        if (devnull >= 0) { /* the pipe from the daemon is done with: never hold it open */
            dup2(devnull, 0);
            close(devnull);
        }
    }
    char **values = calloc(opts.mask_count + 1, sizeof *values);
    size_t nvalues = 0;
    for (size_t i = 0; i < opts.mask_count; i++) {
        const char *v = env_get(env, opts.mask_env[i]);
        if (v && *v)
            values[nvalues++] = (char *)v;
    }
    Masker masker;
    masker_init(&masker, values, nvalues);
    ShapeMasker shapes;
    memset(&shapes, 0, sizeof shapes);

    become_subreaper();
    int wake[2];
    if (pipe2(wake, O_CLOEXEC | O_NONBLOCK) != 0)
        die("pipe: %s", strerror(errno));
    wake_read = wake[0];
    wake_write = wake[1];
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = SA_RESTART;
    sa.sa_handler = on_forwarded;
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGHUP, &sa, NULL);
    sa.sa_handler = on_child;
    sa.sa_flags = SA_RESTART; /* no SA_NOCLDSTOP: a stop or a continue wakes the loop too */
    sigaction(SIGCHLD, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);

    int log = open(opts.log, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
    if (log < 0)
        die("cannot open %s: %s", opts.log, strerror(errno));
    Buf error = {0};
    if (bad_env) {
        buf_str(&error, "cannot start ");
        repr(&error, opts.argv[0]);
        buf_str(&error, ": embedded null byte or illegal name in the environment");
        return finish(0, 0, 0, error.data);
    }
    int out[2];
    if (pipe2(out, O_CLOEXEC) != 0)
        die("pipe: %s", strerror(errno));
    pid_t pid = spawn(env, out[1], &error);
    close(out[1]);
    if (pid == 0) {
        close(out[0]);
        return finish(0, 0, 0, error.data);
    }
    if (stop_signal) /* a stop request raced with the spawn */
        signal_group(stop_signal);
    record_children();
    int status = supervise(log, out[0], &masker, &shapes);
    close(log);
    if (WIFSIGNALED(status))
        return finish(0, 0, WTERMSIG(status), NULL);
    return finish(1, WEXITSTATUS(status), 0, NULL);
}
