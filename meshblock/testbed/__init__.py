"""A real-kernel test bed: Debian guests under QEMU on a private network.

The host kernel a test runs on may lack NVMe/TCP, nvmet, LIO, iSCSI or configfs;
a Debian guest has all of them.  This package builds (once, then from a cache)
a small Debian bookworm image from Debian's own packages, boots guests from it
under QEMU (TCG), gives each a command channel over virtio-serial, mounts the
project's checkout read-only inside them, and joins them on a bridge in a
network namespace of their own, which host programs can enter too.

    from meshblock.testbed import Testbed

    with Testbed() as tb:
        a, b = tb.guests(2)
        print(a.check("uname -r"), b.hostnqn)
        c = tb.guest("c", kernel="backports")   # Debian's backports kernel instead of the stock one

See README.md beside this file.
"""

from .bed import Testbed
from .errors import AgentTimeout, CommandFailed, GuestError, TestbedError, TestbedUnavailable
from .guest import CommandResult, Guest
from .image import Image, Kernel, default_cache_dir, ensure_image, find_mirror, host_problems, image_key

__all__ = [
    "AgentTimeout",
    "CommandFailed",
    "CommandResult",
    "Guest",
    "GuestError",
    "Image",
    "Kernel",
    "Testbed",
    "TestbedError",
    "TestbedUnavailable",
    "default_cache_dir",
    "ensure_image",
    "find_mirror",
    "host_problems",
    "image_key",
]
