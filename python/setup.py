"""setup.py -- `pip install ./python`: the gpt2c Python package, with the
shared library copied into it so the installed package needs nothing else.

The library is $GPT2C_LIBRARY if set, else libgpt2c.so of the build folder
$GPT2C_BUILD (made with `make` if missing), else of the source tree's build/,
which `make` first brings up to date. Built outside the source tree and with neither given,
the package uses a system-wide libgpt2c.so.0 (`make install`)."""
import os
import re
import shutil
import subprocess

from setuptools import Distribution, setup
from setuptools.command.build_py import build_py

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
HEADER = os.path.join(REPO, "include", "gpt2c.h")


def version():
    try:
        with open(HEADER) as f:
            return re.search(r'#define GPT2C_VERSION "([^"]+)"', f.read()).group(1)
    except (OSError, AttributeError):
        return "0.1.0"


class build_with_library(build_py):
    def run(self):
        super().run()
        lib = os.environ.get("GPT2C_LIBRARY")
        if not lib and os.path.exists(HEADER):
            given = os.environ.get("GPT2C_BUILD")
            build = os.path.abspath(given or os.path.join(REPO, "build"))
            lib = os.path.join(build, "libgpt2c.so")
            # The source tree's own build is brought up to date (make does nothing when it
            # is), so a pull without a make cannot bundle a stale library; a build folder
            # given by name is taken as it is (it may have been made with other flags).
            if not given or not os.path.exists(lib):
                subprocess.run(["make", "-C", REPO, f"BUILD={build}", lib], check=True)
        if lib and os.path.exists(lib):
            dest = os.path.join(self.build_lib, "gpt2c", "libgpt2c.so")
            shutil.copyfile(os.path.realpath(lib), dest)
            os.chmod(dest, 0o755)
        else:
            print("gpt2c: no libgpt2c.so to bundle; the package will load a system-wide libgpt2c.so.0")


class binary_distribution(Distribution):
    """The wheel holds a native library: tag it for this platform."""

    def has_ext_modules(self):
        return True


setup(
    name="gpt2c",
    distclass=binary_distribution,
    version=version(),
    description="The transformers API subset GPT-2-era scripts use, on gpt2c's C engine",
    packages=["gpt2c"],
    python_requires=">=3.9",
    cmdclass={"build_py": build_with_library},
    zip_safe=False,
)
