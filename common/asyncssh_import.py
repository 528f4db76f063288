"""What every convocate process changes about importing asyncssh, for start-up time (issue 13).

asyncssh imports all it can offer when it is first imported. Two of those things cost
every process that talks SSH (each command of ``convocate-host`` that asks an agent pays
them on every call) and convocate uses neither:

- its look-ups of liboqs and libnettle, which start ``ldconfig``, ``gcc`` and ``ld``: they
  are answered from the linker cache instead (:mod:`common.native_libs`; the libraries
  are still used where installed);
- its optional X.509 certificate support, which loads ``cryptography.x509``: left out.
  convocate pins raw host keys in known_hosts files and authenticates clients with raw
  keys only (``x509_trusted_certs=None`` everywhere), so no certificate is ever parsed;
  without the module asyncssh offers no ``x509v3-*`` algorithms, the same key types as
  before otherwise. (Our own certificate code, :mod:`hostctl.log_pki`, imports
  ``cryptography.x509`` itself and is unaffected.)

:func:`install` arranges both for the process's first ``import asyncssh``. :mod:`common`
calls it when it loads, which every process of the project does before asyncssh.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from importlib.machinery import ModuleSpec
    from types import ModuleType

__all__ = ["LEFT_OUT", "install"]

# asyncssh modules that asyncssh itself treats as optional (imported under try/except ImportError).
LEFT_OUT = ("asyncssh.crypto.x509",)


class _BeforeAsyncssh:
    """A meta-path finder that prepares the import when ``asyncssh`` is first imported, then leaves."""

    def find_spec(self, fullname: str, _path: object = None, _target: ModuleType | None = None,
                  ) -> ModuleSpec | None:
        if fullname == "asyncssh":
            sys.meta_path.remove(self)
            # Here, not at the top: `import common` (every process, --help included) stays light.
            from common.native_libs import answer_asyncssh_lookups  # noqa: PLC0415

            answer_asyncssh_lookups()
            for name in LEFT_OUT:
                sys.modules.setdefault(name, None)  # type: ignore[arg-type] # None: its import raises ImportError
        return None   # the regular finders load asyncssh


def install() -> None:
    """Prepare the first ``import asyncssh`` of this process (see the module's note); once.

    Cheap: nothing is imported or read until asyncssh itself is imported.
    """
    if "asyncssh" in sys.modules:
        return
    if not any(isinstance(f, _BeforeAsyncssh) for f in sys.meta_path):
        sys.meta_path.insert(0, _BeforeAsyncssh())
