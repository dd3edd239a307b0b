"""Optional native build: the detection hot path compiled with Cython.

The modules in ``agentwatch._native.COMPILED`` are plain Python; Cython compiles them
unchanged (annotations are not used as C types), which makes the engine ~25 % faster with
byte-identical anomalies. A few hot classes opt in to Cython's pure-Python mode
(``@cython.cclass`` with ``@cython.annotation_typing(True)``: ``AgentBaseline`` and
``mix_shift``'s fleet mix): compiled, their numbers are C doubles, whose arithmetic is the
same IEEE arithmetic (floor divisions stay Python's, see the comments there); without
Cython, ``agentwatch.detectors._cython_shim`` stands in for its decorators.

Each build gets a ``<build>.sha256`` record of its source, which
``agentwatch._native`` checks before using it. Without Cython or a C compiler, or with
``AGENTWATCH_PURE_PYTHON=1``, nothing is compiled and the sources run as they are.
"""

from __future__ import annotations

import os
import runpy
from pathlib import Path

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

# the list and the switch live in the package; read them without importing it (the build
# environment has none of its dependencies)
_ROOT = Path(__file__).parent
_NATIVE = runpy.run_path(str(_ROOT / "agentwatch" / "_native.py"))
COMPILED = _NATIVE["COMPILED"]
pure_python_requested = _NATIVE["pure_python_requested"]
source_digest = _NATIVE["source_digest"]


class BuildExt(build_ext):
    """Also record, next to each build, the SHA-256 of the source it was built from."""

    def run(self) -> None:
        super().run()
        for ext in self.extensions:
            target = Path(self.get_ext_fullpath(ext.name))  # in place with --inplace
            source = _ROOT.joinpath(*ext.name.split(".")).with_suffix(".py")
            record = target.with_name(target.name + ".sha256")
            if target.exists() and target.stat().st_mtime >= source.stat().st_mtime:
                record.write_text(source_digest(source) + "\n")
            else:  # an optional build that failed left an older one (or none): unrecorded
                record.unlink(missing_ok=True)


def _extensions() -> list[Extension]:
    if pure_python_requested(os.environ):
        return []
    try:
        from Cython.Build import cythonize
    except ImportError:
        print("agentwatch: Cython is not installed; the pure-Python detectors are used")
        return []
    sources = [f"agentwatch/detectors/{name}.py" for name in COMPILED]
    extensions = cythonize(
        sources,
        compiler_directives={"language_level": 3, "binding": True, "annotation_typing": False},
        quiet=True,
        build_dir="build/cython",  # the intermediate C stays out of the package
    )
    for extension in extensions:
        extension.optional = True  # no C compiler: warn and keep the pure-Python module
        if os.name != "nt":  # GCC and Clang: never fuse a*b+c into one rounding (an FMA), as
            # -march flags with FMA otherwise allow; Python rounds every operation
            extension.extra_compile_args.append("-ffp-contract=off")
    return list(extensions)


setup(ext_modules=_extensions(), cmdclass={"build_ext": BuildExt})
