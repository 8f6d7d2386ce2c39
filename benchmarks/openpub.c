/* openpub: an open-loop MQTT 3.1.1 load generator (QoS 0) and a bare counting subscriber, on raw sockets.
 *
 *   openpub pub DEVICES_FILE --rate R (--seconds S | --count N) [--seq-start K] [--tick-us 1000] [--flush-ms 0]
 *   openpub sub HOST PORT CLIENT_ID USERNAME PASSWORD FILTER [--count N] [--idle-s 3] [--timeout-s 120]
 *
 * pub: DEVICES_FILE ("-" for stdin) has one device a line: `host port client_id username password topic`
 * ("-" for no username / password). It connects them all (CONNECT, then each CONNACK), then every tick
 * (1 ms) builds the readings due by then (due = rate x elapsed), round-robin over the devices, and writes
 * each device's pending frames with one non-blocking send: a device's readings leave within a tick, as a
 * device would send them. --flush-ms N writes a device's frames only every N ms (devices staggered), fewer
 * and larger writes: cheaper for the publisher and the broker, less like real devices. --rate 0 sends
 * --count readings flat out. A reading is a 117-byte JSON object (at 6-digit seq) with a per-device
 * sequence number from --seq-start and a per-device strictly increasing millisecond `ts` (max(now, last
 * + 1)), so two readings of a device never share one.
 * Stdout: `connected N T0_NS CONNECT_S` (T0 on CLOCK_MONOTONIC: the schedule's origin), `progress S SENT
 * BEHIND_MS` each second, and at the end `done {json}`: sent (in all and per device), how far behind its
 * schedule the generator fell at worst (readings due but not built or refused by a full socket, plus how
 * late its clock woke it), when the last byte was written, its CPU seconds.
 *
 * sub: subscribes to FILTER, prints `ready`, counts PUBLISH packets until --count arrived or none came for
 * --idle-s after the first, then prints `done {"received": n, "first_ns": .., "last_ns": ..}`.
 *
 * SIGTERM/SIGINT stop either cleanly (what was sent is reported); it also stops when its parent dies.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define MAX_PENDING (64L << 20) /* bytes built but not yet written, in all: beyond, the generator waits */
#define CONNECT_BATCH 50        /* connections opened before their CONNACKs are read */

typedef struct {
    char host[64], id[192], user[192], pass[192], topic[256];
    int port, fd, blocked; /* blocked: the socket did not take all at the last try */
    long long seq, sent, last_ts;
    unsigned char head[260]; /* the PUBLISH variable header: topic length and topic */
    int head_len;
    char *buf; /* frames built and not yet written: buf[off, len) */
    size_t off, len, cap;
} device;

static volatile sig_atomic_t stopping = 0;
static void on_signal(int sig) { (void)sig; stopping = 1; }

static long long clock_ns(clockid_t clock) {
    struct timespec t;
    clock_gettime(clock, &t);
    return t.tv_sec * 1000000000LL + t.tv_nsec;
}

static void die(const char *what) {
    fprintf(stderr, "openpub: %s: %s\n", what, errno ? strerror(errno) : "failed");
    exit(2);
}

static int put_length(unsigned char *out, size_t n) { /* MQTT's variable-length remaining length */
    int i = 0;
    do {
        unsigned char byte = n % 128;
        n /= 128;
        out[i++] = byte | (n ? 0x80 : 0);
    } while (n);
    return i;
}

static int put_string(unsigned char *out, const char *s) {
    size_t n = strlen(s);
    out[0] = n >> 8;
    out[1] = n & 0xff;
    memcpy(out + 2, s, n);
    return (int)n + 2;
}

static void send_all(int fd, const void *data, size_t len) { /* blocking: set-up packets only */
    const char *p = data;
    while (len) {
        ssize_t n = send(fd, p, len, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) die("send");
        p += n;
        len -= n;
    }
}

static int read_exact(int fd, unsigned char *out, size_t len, int timeout_ms) {
    size_t got = 0;
    while (got < len) {
        struct pollfd p = {fd, POLLIN, 0};
        if (poll(&p, 1, timeout_ms) <= 0) return -1;
        ssize_t n = recv(fd, out + got, len - got, 0);
        if (n <= 0) return -1;
        got += n;
    }
    return 0;
}

/* Open a TCP connection and send CONNECT (clean session, no keepalive); the CONNACK is read later. */
static int open_session(const char *host, int port, const char *id, const char *user, const char *pass) {
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons(port)};
    if (inet_pton(AF_INET, host, &addr.sin_addr) != 1) die("host must be an IPv4 address");
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0) die("socket");
    if (connect(fd, (struct sockaddr *)&addr, sizeof addr) < 0) die("connect");
    unsigned char body[700], packet[710];
    int n = put_string(body, "MQTT");
    body[n++] = 4;                                               /* protocol level 3.1.1 */
    body[n++] = 0x02 | (*user ? 0x80 : 0) | (*pass ? 0x40 : 0); /* clean session, username, password */
    body[n++] = 0;
    body[n++] = 0; /* keepalive off */
    n += put_string(body + n, id);
    if (*user) n += put_string(body + n, user);
    if (*pass) n += put_string(body + n, pass);
    packet[0] = 0x10;
    int h = 1 + put_length(packet + 1, n);
    memcpy(packet + h, body, n);
    send_all(fd, packet, h + n);
    return fd;
}

static void expect_connack(int fd, const char *who) {
    unsigned char ack[4];
    if (read_exact(fd, ack, 4, 30000) < 0 || ack[0] != 0x20 || ack[3] != 0) {
        fprintf(stderr, "openpub: the broker refused %s (CONNACK code %d)\n", who, ack[0] == 0x20 ? ack[3] : -1);
        exit(2);
    }
}

static void raise_nofile(void) {
    struct rlimit r;
    if (getrlimit(RLIMIT_NOFILE, &r) == 0 && r.rlim_cur < r.rlim_max) {
        r.rlim_cur = r.rlim_max;
        setrlimit(RLIMIT_NOFILE, &r);
    }
}

#define TAILS 997 /* the readings' values, formatted once: `,"temperature":21.53,...}` */
static struct tail {
    char text[160];
    int len;
} tails[TAILS];

static void make_tails(void) {
    for (int s = 0; s < TAILS; s++)
        tails[s].len = snprintf(tails[s].text, sizeof tails[s].text,
                                ",\"temperature\":%.2f,\"humidity\":%.2f,\"pm2_5\":%.1f,\"pm10\":%.1f,\"co2\":%d,"
                                "\"voc\":%.3f}",
                                19.5 + (s % 400) / 100.0, 40.0 + s / 100.0, 5.0 + (s % 150) / 10.0,
                                8.0 + (s % 220) / 10.0, 420 + s % 600, (s % 1000) / 1000.0);
}

static int put_int(char *out, const char *prefix, long long v) { /* prefix then v in decimal (v >= 0) */
    int n = (int)strlen(prefix), digits = 1;
    memcpy(out, prefix, n);
    for (long long x = v; x >= 10; x /= 10) digits++;
    for (int i = digits - 1; i >= 0; i--, v /= 10) out[n + i] = (char)('0' + v % 10);
    return n + digits;
}

static void append_reading(device *d, long long now_ms) {
    if (d->cap - d->len < 512) {
        if (d->off) { /* slide the unwritten tail to the front before growing */
            memmove(d->buf, d->buf + d->off, d->len - d->off);
            d->len -= d->off;
            d->off = 0;
        }
        if (d->cap - d->len < 512) {
            d->cap = d->cap ? d->cap * 2 : 4096;
            if (!(d->buf = realloc(d->buf, d->cap))) die("out of memory");
        }
    }
    long long s = d->seq++;
    d->last_ts = now_ms > d->last_ts ? now_ms : d->last_ts + 1;
    char payload[256];
    int plen = put_int(payload, "{\"seq\":", s);
    plen += put_int(payload + plen, ",\"ts\":", d->last_ts);
    const struct tail *t = &tails[s % TAILS];
    memcpy(payload + plen, t->text, t->len);
    plen += t->len;
    unsigned char *out = (unsigned char *)d->buf + d->len;
    out[0] = 0x30;
    int h = 1 + put_length(out + 1, d->head_len + plen);
    memcpy(out + h, d->head, d->head_len);
    memcpy(out + h + d->head_len, payload, plen);
    d->len += h + d->head_len + plen;
    d->sent++;
}

/* Write what is pending without blocking; the bytes the kernel took. */
static long flush_device(device *d) {
    long wrote = 0;
    while (d->off < d->len) {
        ssize_t n = send(d->fd, d->buf + d->off, d->len - d->off, MSG_DONTWAIT | MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EINTR) continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK) break;
            die("send to the broker");
        }
        d->off += n;
        wrote += n;
    }
    if (d->off == d->len) d->off = d->len = 0;
    return wrote;
}

static int read_devices(const char *path, device **out) {
    FILE *f = strcmp(path, "-") ? fopen(path, "r") : stdin;
    if (!f) die(path);
    int n = 0, cap = 0;
    device *devs = NULL;
    char line[1200];
    while (fgets(line, sizeof line, f)) {
        device d = {0};
        if (sscanf(line, "%63s %d %191s %191s %191s %255s", d.host, &d.port, d.id, d.user, d.pass, d.topic) != 6)
            continue;
        if (!strcmp(d.user, "-")) d.user[0] = 0;
        if (!strcmp(d.pass, "-")) d.pass[0] = 0;
        if (n == cap && !(devs = realloc(devs, (cap = cap ? cap * 2 : 64) * sizeof *devs))) die("out of memory");
        d.head_len = put_string(d.head, d.topic);
        devs[n++] = d;
    }
    if (f != stdin) fclose(f);
    *out = devs;
    return n;
}

static int publish(int argc, char **argv) {
    double rate = 0, seconds = 0;
    long long count = 0, seq_start = 0, tick_ns = 1000000;
    double flush_ms = 0;
    for (int i = 3; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--rate")) rate = atof(argv[i + 1]);
        else if (!strcmp(argv[i], "--seconds")) seconds = atof(argv[i + 1]);
        else if (!strcmp(argv[i], "--count")) count = atoll(argv[i + 1]);
        else if (!strcmp(argv[i], "--seq-start")) seq_start = atoll(argv[i + 1]);
        else if (!strcmp(argv[i], "--tick-us")) tick_ns = atoll(argv[i + 1]) * 1000;
        else if (!strcmp(argv[i], "--flush-ms")) flush_ms = atof(argv[i + 1]);
        else { fprintf(stderr, "openpub: unknown option %s\n", argv[i]); return 2; }
    }
    long long total = count ? count : (long long)(rate * seconds);
    if (total <= 0) { fprintf(stderr, "openpub: nothing to send: give --count, or --rate and --seconds\n"); return 2; }
    device *devs;
    int n = read_devices(argv[2], &devs);
    if (n == 0) { fprintf(stderr, "openpub: no devices\n"); return 2; }
    long long connect_start = clock_ns(CLOCK_MONOTONIC);
    for (int first = 0; first < n; first += CONNECT_BATCH) {
        int last = first + CONNECT_BATCH < n ? first + CONNECT_BATCH : n;
        for (int i = first; i < last; i++)
            devs[i].fd = open_session(devs[i].host, devs[i].port, devs[i].id, devs[i].user, devs[i].pass);
        for (int i = first; i < last; i++) expect_connack(devs[i].fd, devs[i].user[0] ? devs[i].user : devs[i].id);
        if (stopping) return 1;
    }
    for (int i = 0; i < n; i++) {
        int size = 1 << 20;
        setsockopt(devs[i].fd, SOL_SOCKET, SO_SNDBUF, &size, sizeof size);
        devs[i].seq = seq_start;
    }
    long long flush_ticks = flush_ms * 1e6 / tick_ns < 1 ? 1 : (long long)(flush_ms * 1e6 / tick_ns);
    long long t0 = clock_ns(CLOCK_MONOTONIC), next_tick = t0, next_report = t0 + 1000000000LL;
    printf("connected %d %lld %.3f\n", n, t0, (t0 - connect_start) / 1e9);
    fflush(stdout);
    long long built = 0, built_bytes = 0, pending = 0, t_end = t0;
    double behind_max_ms = 0, late_ms = 0;
    while (!stopping) {
        long long now = clock_ns(CLOCK_MONOTONIC);
        long long due = rate > 0 ? (long long)((now - t0) / 1e9 * rate) : total;
        if (due > total) due = total;
        long long now_ms = clock_ns(CLOCK_REALTIME) / 1000000;
        while (built < due && pending < MAX_PENDING) {
            device *d = &devs[built % n];
            size_t before = d->len;
            append_reading(d, now_ms);
            pending += d->len - before;
            built_bytes += d->len - before;
            built++;
        }
        int waiting = 0;
        long long blocked = 0; /* bytes a full socket would not take */
        long long k = (now - t0) / tick_ns;
        for (int i = 0; i < n; i++) {
            device *d = &devs[i];
            int its_turn = (k + i) % flush_ticks == 0 || built == total || d->len - d->off >= 65536;
            if (d->len == d->off || !(its_turn || d->blocked)) continue;
            long wrote = flush_device(d);
            pending -= wrote;
            if (wrote) t_end = clock_ns(CLOCK_MONOTONIC);
            d->blocked = d->len != d->off;
            waiting += d->blocked;
            blocked += d->blocked ? (long long)(d->len - d->off) : 0;
        }
        if (rate > 0) { /* readings due but not built, or refused by a full socket: in time at this rate */
            double unsent = (double)(due - built) + (built ? (double)blocked * built / built_bytes : 0);
            double behind_ms = unsent / rate * 1000 + late_ms;
            if (behind_ms > behind_max_ms) behind_max_ms = behind_ms;
        }
        if (built == total && pending == 0) break;
        if (now >= next_report) { /* readings handed to the kernel, approximately (frame sizes differ a little) */
            long long written = built - (built_bytes ? (long long)((double)pending * built / built_bytes) : 0);
            printf("progress %.1f %lld %.1f\n", (now - t0) / 1e9, written, behind_max_ms);
            fflush(stdout);
            next_report += 1000000000LL;
        }
        if (rate > 0) {
            long long scheduled = next_tick + tick_ns;
            now = clock_ns(CLOCK_MONOTONIC);
            next_tick = scheduled > now ? scheduled : now; /* a late loop catches up from now */
            struct timespec ts = {next_tick / 1000000000LL, next_tick % 1000000000LL};
            clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL);
            late_ms = (clock_ns(CLOCK_MONOTONIC) - scheduled) / 1e6; /* the readings due meanwhile are late */
        } else if (waiting) { /* flat out: wait for a socket to take more */
            struct pollfd *p = calloc(n, sizeof *p);
            int m = 0;
            for (int i = 0; i < n; i++)
                if (devs[i].len != devs[i].off) p[m++] = (struct pollfd){devs[i].fd, POLLOUT, 0};
            poll(p, m, 10);
            free(p);
        }
    }
    if (stopping) { /* stopped early: give what is built 2 s to go out */
        long long deadline = clock_ns(CLOCK_MONOTONIC) + 2000000000LL;
        while (pending > 0 && clock_ns(CLOCK_MONOTONIC) < deadline) {
            for (int i = 0; i < n; i++) pending -= flush_device(&devs[i]);
            usleep(1000);
        }
    }
    for (int i = 0; i < n; i++) {
        send_all(devs[i].fd, "\xe0\x00", 2); /* DISCONNECT */
        shutdown(devs[i].fd, SHUT_WR);
    }
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    double cpu = ru.ru_utime.tv_sec + ru.ru_stime.tv_sec + (ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
    printf("done {\"devices\": %d, \"sent\": %lld, \"unsent_bytes\": %lld, \"seq_start\": %lld, \"t0_ns\": %lld, "
           "\"t_end_ns\": %lld, \"behind_max_ms\": %.1f, \"cpu_s\": %.3f, \"stopped\": %s, \"per_device\": [",
           n, built, pending, seq_start, t0, t_end, behind_max_ms, cpu, stopping ? "true" : "false");
    for (int i = 0; i < n; i++) printf("%s%lld", i ? "," : "", devs[i].sent);
    printf("]}\n");
    fflush(stdout);
    for (int i = 0; i < n; i++) close(devs[i].fd);
    return 0;
}

static int subscribe(int argc, char **argv) {
    if (argc < 8) { fprintf(stderr, "openpub sub HOST PORT CLIENT_ID USERNAME PASSWORD FILTER [options]\n"); return 2; }
    long long want = 0;
    double idle_s = 3, timeout_s = 120;
    for (int i = 8; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--count")) want = atoll(argv[i + 1]);
        else if (!strcmp(argv[i], "--idle-s")) idle_s = atof(argv[i + 1]);
        else if (!strcmp(argv[i], "--timeout-s")) timeout_s = atof(argv[i + 1]);
    }
    const char *user = strcmp(argv[5], "-") ? argv[5] : "", *pass = strcmp(argv[6], "-") ? argv[6] : "";
    int fd = open_session(argv[2], atoi(argv[3]), argv[4], user, pass);
    expect_connack(fd, argv[4]);
    unsigned char body[400], packet[410];
    int n = 0;
    body[n++] = 0;
    body[n++] = 1; /* packet id */
    n += put_string(body + n, argv[7]);
    body[n++] = 0; /* QoS 0 */
    packet[0] = 0x82;
    int h = 1 + put_length(packet + 1, n);
    memcpy(packet + h, body, n);
    send_all(fd, packet, h + n);
    unsigned char suback[5];
    if (read_exact(fd, suback, 5, 10000) < 0 || suback[0] != 0x90 || suback[4] > 2) die("SUBACK");
    int size = 8 << 20;
    setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &size, sizeof size);
    printf("ready\n");
    fflush(stdout);
    size_t cap = 1 << 20, len = 0;
    unsigned char *buf = malloc(cap);
    long long received = 0, first = 0, last = 0, started = clock_ns(CLOCK_MONOTONIC);
    while (!stopping && (!want || received < want)) {
        long long now = clock_ns(CLOCK_MONOTONIC);
        if (now - started > timeout_s * 1e9 || (first && now - last > idle_s * 1e9)) break;
        struct pollfd p = {fd, POLLIN, 0};
        if (poll(&p, 1, 50) <= 0) continue;
        ssize_t got = recv(fd, buf + len, cap - len, 0);
        if (got <= 0) break;
        len += got;
        size_t at = 0;
        while (at + 2 <= len) { /* whole packets: type byte, remaining length, body */
            size_t rem = 0, i = 1;
            int shift = 0, complete = 0;
            while (at + i < len && i <= 4) {
                rem |= (size_t)(buf[at + i] & 0x7f) << shift;
                shift += 7;
                if (!(buf[at + i++] & 0x80)) { complete = 1; break; }
            }
            if (!complete || at + i + rem > len) break;
            if ((buf[at] & 0xf0) == 0x30) {
                last = clock_ns(CLOCK_MONOTONIC);
                if (!received++) first = last;
            }
            at += i + rem;
        }
        memmove(buf, buf + at, len - at);
        len -= at;
        if (len == cap && !(buf = realloc(buf, cap *= 2))) die("out of memory");
    }
    printf("done {\"received\": %lld, \"first_ns\": %lld, \"last_ns\": %lld}\n", received, first, last);
    fflush(stdout);
    close(fd);
    return 0;
}

int main(int argc, char **argv) {
    prctl(PR_SET_PDEATHSIG, SIGTERM);
    struct sigaction sa = {.sa_handler = on_signal};
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    raise_nofile();
    make_tails();
    if (argc >= 3 && !strcmp(argv[1], "pub")) return publish(argc, argv);
    if (argc >= 3 && !strcmp(argv[1], "sub")) return subscribe(argc, argv);
    fprintf(stderr, "usage: openpub pub DEVICES_FILE --rate R --seconds S\n"
                    "       openpub sub HOST PORT CLIENT_ID USERNAME PASSWORD FILTER\n");
    return 2;
}
