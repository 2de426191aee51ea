#!/usr/bin/env python3
"""Sets the loopback interface up, like `ip link set lo up`: for a new network namespace on a
machine without iproute2 (minimal Debian images). Standard library only; Linux only."""

import fcntl
import socket
import struct

SIOCGIFFLAGS = 0x8913
SIOCSIFFLAGS = 0x8914
IFF_UP = 0x1
IFREQ = "16sH14x"  # struct ifreq: the name, then ifr_flags

with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
    request = struct.pack(IFREQ, b"lo", 0)
    flags = struct.unpack(IFREQ, fcntl.ioctl(sock, SIOCGIFFLAGS, request))[1]
    fcntl.ioctl(sock, SIOCSIFFLAGS, struct.pack(IFREQ, b"lo", flags | IFF_UP))
