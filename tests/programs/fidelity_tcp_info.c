/* getsockopt(TCP_INFO) on a flow (issue 9), compared with the kernel's answer.
 *
 *     fidelity_tcp_info PORT
 *
 * First over kernel TCP (a listener of its own on 127.0.0.2, port 0, which no rule
 * matches): the kernel's size of struct tcp_info (the length it returns for a large
 * buffer) and its answer for sizeof(struct tcp_info). Then over the flow to
 * 127.0.0.1:PORT (an echo server): 64 KiB sent and echoed back, then TCP_INFO asked
 * with sizeof(struct tcp_info) ("full"), with offsetof(tcpi_rttvar) ("short") and with
 * a large buffer ("big"), each into a buffer filled with 0xAB first. One line each:
 *
 *     kernel size=N struct_len=N sizeof=N
 *     LABEL req=N len=N untouched=0|1 state=.. rtt=.. rttvar=.. snd_cwnd=.. snd_mss=..
 *           total_retrans=.. bytes_acked=.. bytes_received=..
 *
 * (on one line; a field beyond the returned length prints as "-"; untouched says
 * that no byte past the returned length was written). Exits 0 once all is printed.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <linux/tcp.h>
#include <netinet/in.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define BUF 2048

static void die(const char *what) {
    perror(what);
    exit(1);
}

static int connect_to(const char *ip, int port) {
    int s = socket(AF_INET, SOCK_STREAM, 0);
    if (s < 0)
        die("socket");
    struct sockaddr_in a;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_port = htons((unsigned short)port);
    inet_pton(AF_INET, ip, &a.sin_addr);
    if (connect(s, (struct sockaddr *)&a, sizeof a) != 0)
        die("connect");
    return s;
}

/* The kernel's answers on a TCP connection to a listener of our own. */
static void kernel_sizes(void) {
    int l = socket(AF_INET, SOCK_STREAM, 0);
    if (l < 0)
        die("socket");
    struct sockaddr_in a;
    socklen_t alen = sizeof a;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    inet_pton(AF_INET, "127.0.0.2", &a.sin_addr);
    if (bind(l, (struct sockaddr *)&a, sizeof a) != 0)
        die("bind kernel listener");
    if (listen(l, 1) != 0)
        die("listen kernel listener");
    if (getsockname(l, (struct sockaddr *)&a, &alen) != 0)
        die("getsockname");
    int c = connect_to("127.0.0.2", ntohs(a.sin_port));
    int s = accept(l, NULL, NULL);
    if (s < 0)
        die("accept");
    unsigned char buf[BUF];
    socklen_t big = sizeof buf, full = sizeof(struct tcp_info);
    if (getsockopt(c, IPPROTO_TCP, TCP_INFO, buf, &big) != 0)
        die("kernel TCP_INFO");
    if (getsockopt(c, IPPROTO_TCP, TCP_INFO, buf, &full) != 0)
        die("kernel TCP_INFO");
    printf("kernel size=%u struct_len=%u sizeof=%zu\n", (unsigned)big, (unsigned)full,
           sizeof(struct tcp_info));
    close(s);
    close(c);
    close(l);
}

static void write_all(int s, const unsigned char *p, size_t n) {
    while (n > 0) {
        ssize_t w = write(s, p, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            die("write");
        p += w;
        n -= (size_t)w;
    }
}

static void read_exact(int s, unsigned char *p, size_t n) {
    while (n > 0) {
        ssize_t r = read(s, p, n);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            die("read");
        if (r == 0) {
            fprintf(stderr, "end of stream before the echo\n");
            exit(1);
        }
        p += r;
        n -= (size_t)r;
    }
}

#define FIELD(name, fmt, cast)                                                        \
    do {                                                                              \
        if (offsetof(struct tcp_info, name) + sizeof(i->name) <= len)                 \
            printf(" %s=" fmt, #name + 5, (cast)i->name);                             \
        else                                                                          \
            printf(" %s=-", #name + 5);                                               \
    } while (0)

static void report(int s, const char *label, socklen_t req) {
    static unsigned char buf[BUF];
    memset(buf, 0xAB, sizeof buf);
    socklen_t len = req;
    if (getsockopt(s, IPPROTO_TCP, TCP_INFO, buf, &len) != 0) {
        printf("%s req=%u error=%d\n", label, (unsigned)req, errno);
        return;
    }
    int untouched = 1;
    for (size_t k = len; k < sizeof buf; k++)
        if (buf[k] != 0xAB)
            untouched = 0;
    const struct tcp_info *i = (const struct tcp_info *)buf;
    printf("%s req=%u len=%u untouched=%d", label, (unsigned)req, (unsigned)len, untouched);
    FIELD(tcpi_state, "%u", unsigned);
    FIELD(tcpi_rtt, "%u", unsigned);
    FIELD(tcpi_rttvar, "%u", unsigned);
    FIELD(tcpi_snd_cwnd, "%u", unsigned);
    FIELD(tcpi_snd_mss, "%u", unsigned);
    FIELD(tcpi_total_retrans, "%u", unsigned);
    FIELD(tcpi_bytes_acked, "%llu", unsigned long long);
    FIELD(tcpi_bytes_received, "%llu", unsigned long long);
    printf("\n");
}

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: %s PORT\n", argv[0]);
        return 2;
    }
    kernel_sizes();
    int s = connect_to("127.0.0.1", atoi(argv[1]));
    unsigned char out[4096], in[4096];
    for (int round = 0; round < 16; round++) {
        for (size_t k = 0; k < sizeof out; k++)
            out[k] = (unsigned char)(k * 31 + round);
        write_all(s, out, sizeof out);
        read_exact(s, in, sizeof in);
        if (memcmp(in, out, sizeof in) != 0) {
            fprintf(stderr, "echo differs in round %d\n", round);
            return 1;
        }
    }
    report(s, "full", sizeof(struct tcp_info));
    report(s, "short", offsetof(struct tcp_info, tcpi_rttvar));
    report(s, "big", BUF);
    fflush(stdout);
    close(s);
    return 0;
}
