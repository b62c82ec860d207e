/* A minimal netcat client, built with -static so that nothing can be preloaded
 * into it (the gateway tests' "program that runs nothing of ours").
 *
 * static_nc HOST PORT: connects over TCP, says "local ADDR:PORT" on stderr,
 * copies stdin to the connection (half-closing it at stdin's end) and the
 * connection to stdout until the server's end, each direction to its end. Exit 0
 * once both ended; 1 with
 * "error: <strerror>" on stderr when a call fails (a reset, say). */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static int fail(const char *what) {
    fprintf(stderr, "error: %s: %s\n", what, strerror(errno));
    return 1;
}

static int write_all(int fd, const char *b, ssize_t n) {
    while (n > 0) {
        ssize_t w = write(fd, b, n);
        if (w < 0 && errno == EINTR) continue;
        if (w < 0) return -1;
        b += w;
        n -= w;
    }
    return 0;
}

int main(int argc, char **argv) {
    if (argc != 3) {
        fprintf(stderr, "usage: static_nc HOST PORT\n");
        return 2;
    }
    struct sockaddr_in to = {.sin_family = AF_INET, .sin_port = htons(atoi(argv[2]))};
    if (inet_pton(AF_INET, argv[1], &to.sin_addr) != 1) return 2;
    int s = socket(AF_INET, SOCK_STREAM, 0);
    if (s < 0) return fail("socket");
    if (connect(s, (struct sockaddr *)&to, sizeof to) < 0) return fail("connect");
    struct sockaddr_in me;
    socklen_t len = sizeof me;
    getsockname(s, (struct sockaddr *)&me, &len);
    char ip[INET_ADDRSTRLEN];
    inet_ntop(AF_INET, &me.sin_addr, ip, sizeof ip);
    fprintf(stderr, "local %s:%d\n", ip, ntohs(me.sin_port));
    /* What stdin gave and the connection has not taken yet: the connection is
     * written without blocking, so that its other direction is always read (a
     * server that echoes would otherwise deadlock with us). */
    static char buf[65536], out[65536];
    ssize_t out_at = 0, out_len = 0;
    int in_open = 1, sock_open = 1;
    while (sock_open || in_open || out_at < out_len) {
        short sev = (sock_open ? POLLIN : 0) | (out_at < out_len ? POLLOUT : 0);
        short iev = in_open && out_at == out_len ? POLLIN : 0;
        struct pollfd p[2] = {{.fd = s, .events = sev}, {.fd = 0, .events = iev}};
        if (poll(p, 2, -1) < 0) {
            if (errno == EINTR) continue;
            return fail("poll");
        }
        if (sock_open && (p[0].revents & (POLLIN | POLLHUP | POLLERR))) {
            ssize_t n = read(s, buf, sizeof buf);
            if (n < 0 && errno == EINTR) continue;
            if (n < 0) return fail("read");
            if (n == 0) sock_open = 0;
            if (n > 0 && write_all(1, buf, n) < 0) return fail("write stdout");
        }
        if (out_at < out_len && (p[0].revents & (POLLOUT | POLLERR | POLLHUP))) {
            ssize_t w = send(s, out + out_at, out_len - out_at, MSG_DONTWAIT | MSG_NOSIGNAL);
            if (w < 0 && errno != EAGAIN && errno != EINTR) return fail("write");
            if (w > 0) out_at += w;
        }
        if (iev && p[1].revents) {
            ssize_t n = read(0, out, sizeof out);
            if (n < 0 && errno == EINTR) continue;
            if (n < 0) return fail("read stdin");
            out_at = 0;
            out_len = n;
            if (n == 0) {
                in_open = 0;
                if (shutdown(s, SHUT_WR) < 0) return fail("shutdown");
            }
        }
    }
    return 0;
}
