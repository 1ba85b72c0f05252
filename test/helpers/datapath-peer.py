#!/usr/bin/env python3
"""Small TCP/UDP peers for the datapath's kernel tests and benchmark.

  serve NAME PORT...           TCP servers: greet "NAME PORT PEER_IP\\n", then echo; print "accept PORT PEER" per connection
  userve NAME PORT             UDP server: answer every datagram with "NAME PORT PEER_IP"
  connect IP PORT [TIMEOUT]    print the server's first line; exit 2 on timeout, 3 on refusal
  uconnect IP PORT [TIMEOUT]   one datagram, print the answer; exit 2 on timeout
  ping IP [TIMEOUT]            one ICMP echo request (raw socket), print "reply TYPE" of the answer; exit 2 on timeout
  hold IP PORT [TIMEOUT]       keep one connection: print the greeting, then per stdin line send it and
                               print the echo, or "TIMEOUT"
  bulk IP PORT N               after the greeting, N messages of 1..4096 random bytes, each checked against
                               its echo; print "ok N" (exit 4 on a mismatch)
  loop IP PORT SECONDS         new connections one after another for SECONDS; print "ok N fail M"
  tproxy PORT [MARK]           transparent (IP_TRANSPARENT) listener on 0.0.0.0:PORT standing in for the
                               node proxy: print "accept PEER ORIGDST" per connection; without MARK answer
                               "proxy ORIGDST"; with MARK connect upstream to ORIGDST with SO_MARK=MARK and
                               answer "via-proxy <upstream's first line>"
  tproxy6 PORT                 the same for IPv6 on [::]:PORT (IPV6_TRANSPARENT), answering "proxy ORIGDST"
  utproxy PORT                 UDP receiver on 0.0.0.0:PORT standing in for a DNS proxy: learns each datagram's
                               original destination (IP_RECVORIGDSTADDR), prints "accept PEER ORIGDST" and answers
                               "uproxy ORIGDST" from the original destination (an IP_TRANSPARENT socket bound to it)
Every server prints "ready" once listening and flushes each line.
"""
import os
import socket
import sys
import threading

IP_TRANSPARENT = 19
SO_MARK = 36


def out(line):
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def family(ip):
    return socket.AF_INET6 if ":" in ip else socket.AF_INET


def plain(ip):
    """IPv4 peers of a dual-stack listener show as ::ffff:a.b.c.d."""
    return ip[7:] if ip.startswith("::ffff:") else ip


def tcp_listener(port, transparent=False):
    if transparent:
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.setsockopt(socket.SOL_IP, IP_TRANSPARENT, 1)
        s.bind(("0.0.0.0", port))
        s.listen(128)
        return s
    s = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
    s.bind(("::", port))
    s.listen(128)
    return s


def serve(name, ports):
    def loop(ls, port):
        while True:
            c, peer = ls.accept()
            out(f"accept {port} {plain(peer[0])}")
            threading.Thread(target=handle, args=(c, port, peer), daemon=True).start()

    def handle(c, port, peer):
        try:
            c.sendall(f"{name} {port} {plain(peer[0])}\n".encode())
            while True:
                d = c.recv(65536)
                if not d:
                    break
                c.sendall(d)
        except OSError:
            pass
        finally:
            c.close()

    threads = []
    for p in ports:
        ls = tcp_listener(p)
        t = threading.Thread(target=loop, args=(ls, p), daemon=True)
        t.start()
        threads.append(t)
    out("ready")
    for t in threads:
        t.join()


def userve(name, port):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("0.0.0.0", port))
    out("ready")
    while True:
        _, peer = s.recvfrom(2048)
        s.sendto(f"{name} {port} {peer[0]}".encode(), peer)


def read_line(s):
    buf = b""
    while not buf.endswith(b"\n"):
        d = s.recv(4096)
        if not d:
            break
        buf += d
    return buf.decode().strip()


def connect(ip, port, timeout):
    s = socket.socket(family(ip), socket.SOCK_STREAM)
    s.settimeout(timeout)
    try:
        s.connect((ip, port))
        line = read_line(s)
        s.sendall(b"ping\n")
        echo = read_line(s)
        out(line if echo == "ping" else f"{line} (no echo: {echo!r})")
    except socket.timeout:
        out("TIMEOUT")
        sys.exit(2)
    except ConnectionRefusedError:
        out("REFUSED")
        sys.exit(3)


def uconnect(ip, port, timeout):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.settimeout(timeout)
    try:
        s.sendto(b"hi", (ip, port))
        d, _ = s.recvfrom(2048)
        out(d.decode())
    except socket.timeout:
        out("TIMEOUT")
        sys.exit(2)


def icmp_checksum(b):
    if len(b) % 2:
        b += b"\0"
    total = sum((b[i] << 8) + b[i + 1] for i in range(0, len(b), 2))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def ping(ip, timeout):
    s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
    s.settimeout(timeout)
    ident = (os.getpid() & 0xFFFF) or 1
    body = bytes([8, 0, 0, 0]) + ident.to_bytes(2, "big") + (1).to_bytes(2, "big") + b"meshd-ping"
    c = icmp_checksum(body)
    s.sendto(body[:2] + c.to_bytes(2, "big") + body[4:], (ip, 0))
    try:
        while True:
            d, peer = s.recvfrom(2048)
            icmp = d[(d[0] & 0x0F) * 4:]
            if peer[0] == ip and icmp[0] != 8 and icmp[4:6] == ident.to_bytes(2, "big"):
                out(f"reply {icmp[0]}")
                return
    except socket.timeout:
        out("TIMEOUT")
        sys.exit(2)


def hold(ip, port, timeout):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.settimeout(timeout)
    try:
        s.connect((ip, port))
        out(read_line(s))
    except OSError:
        out("TIMEOUT")
        sys.exit(2)
    for line in sys.stdin:
        try:
            s.sendall(line.encode())
            out(read_line(s))
        except socket.timeout:
            out("TIMEOUT")
        except OSError as e:
            out(f"ERROR {type(e).__name__}")


def bulk(ip, port, n):
    import os
    s = socket.create_connection((ip, port), timeout=5)
    read_line(s)
    for i in range(n):
        msg = os.urandom(1 + (i * 7919) % 4096)
        s.sendall(msg)
        got = b""
        while len(got) < len(msg):
            d = s.recv(len(msg) - len(got))
            if not d:
                break
            got += d
        if got != msg:
            out(f"mismatch at {i}")
            sys.exit(4)
    out(f"ok {n}")


def utproxy(port):
    import struct
    IP_RECVORIGDSTADDR = 20
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_IP, IP_RECVORIGDSTADDR, 1)
    s.bind(("0.0.0.0", port))
    out("ready")
    while True:
        data, anc, _, peer = s.recvmsg(2048, socket.CMSG_SPACE(16))
        dst = None
        for level, typ, raw in anc:
            if level == socket.SOL_IP and typ == IP_RECVORIGDSTADDR:
                dport, = struct.unpack("!H", raw[2:4])
                dst = (socket.inet_ntoa(raw[4:8]), dport)
        if dst is None:
            out("no-origdst")
            continue
        out(f"accept {peer[0]}:{peer[1]} {dst[0]}:{dst[1]}")
        r = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        r.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        r.setsockopt(socket.SOL_IP, IP_TRANSPARENT, 1)
        r.bind(dst)
        r.sendto(f"uproxy {dst[0]}:{dst[1]}".encode(), peer)
        r.close()


def loop(ip, port, seconds):
    import time
    ok = fail = 0
    end = time.time() + seconds
    while time.time() < end:
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.settimeout(1.0)
        try:
            s.connect((ip, port))
            if read_line(s):
                ok += 1
            else:
                fail += 1
        except OSError:
            fail += 1
        finally:
            s.close()
    out(f"ok {ok} fail {fail}")


def tproxy6(port):
    IPV6_TRANSPARENT = 75
    ls = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.setsockopt(socket.IPPROTO_IPV6, IPV6_TRANSPARENT, 1)
    ls.bind(("::", port))
    ls.listen(128)
    out("ready")
    while True:
        c, peer = ls.accept()
        dst = c.getsockname()
        out(f"accept [{peer[0]}]:{peer[1]} [{dst[0]}]:{dst[1]}")
        try:
            c.sendall(f"proxy [{dst[0]}]:{dst[1]}\n".encode())
            while True:
                d = c.recv(65536)
                if not d:
                    break
                c.sendall(d)
        except OSError:
            pass
        finally:
            c.close()


def tproxy(port, mark):
    ls = tcp_listener(port, transparent=True)
    out("ready")

    def handle(c, peer):
        try:
            dst = c.getsockname()
            out(f"accept {peer[0]}:{peer[1]} {dst[0]}:{dst[1]}")
            if mark is None:
                c.sendall(f"proxy {dst[0]}:{dst[1]}\n".encode())
            else:
                u = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                u.setsockopt(socket.SOL_SOCKET, SO_MARK, mark)
                u.settimeout(3)
                try:
                    u.connect(dst)
                    line = read_line(u)
                except OSError as e:
                    line = f"upstream-failed {type(e).__name__}"
                c.sendall(f"via-proxy {line}\n".encode())
            while True:
                d = c.recv(65536)
                if not d:
                    break
                c.sendall(d)
        except OSError:
            pass
        finally:
            c.close()

    while True:
        c, peer = ls.accept()
        threading.Thread(target=handle, args=(c, peer), daemon=True).start()


def main():
    a = sys.argv[1:]
    if a[0] == "serve":
        serve(a[1], [int(p) for p in a[2:]])
    elif a[0] == "userve":
        userve(a[1], int(a[2]))
    elif a[0] == "connect":
        connect(a[1], int(a[2]), float(a[3]) if len(a) > 3 else 2.0)
    elif a[0] == "uconnect":
        uconnect(a[1], int(a[2]), float(a[3]) if len(a) > 3 else 2.0)
    elif a[0] == "ping":
        ping(a[1], float(a[2]) if len(a) > 2 else 2.0)
    elif a[0] == "hold":
        hold(a[1], int(a[2]), float(a[3]) if len(a) > 3 else 2.0)
    elif a[0] == "bulk":
        bulk(a[1], int(a[2]), int(a[3]))
    elif a[0] == "utproxy":
        utproxy(int(a[1]))
    elif a[0] == "loop":
        loop(a[1], int(a[2]), float(a[3]))
    elif a[0] == "tproxy6":
        tproxy6(int(a[1]))
    elif a[0] == "tproxy":
        tproxy(int(a[1]), int(a[2], 0) if len(a) > 2 else None)
    else:
        sys.exit(f"unknown mode {a[0]}")


if __name__ == "__main__":
    main()
