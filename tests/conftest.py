"""Test session set-up: four fake CPU devices, so multi-device code is tested on one CPU."""

import os

# Must happen before JAX initialises its backend. One process sees four CPU "devices"; single-device
# code still runs on the first, and tests that need one device build meshes of devices[:1].
os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=4")
