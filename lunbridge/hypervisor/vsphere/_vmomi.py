"""The only module that imports pyVmomi and pyVim (checked by import-linter).

pyVmomi's types are generated at run time and its stubs leave most of them untyped, so its
handles are re-exported here as `Any`: the rest of the vSphere layer names them through this
module, and turns what they return into typed dataclasses as early as it can.
"""

from __future__ import annotations

from typing import Any

import pyVim.connect
import pyVmomi

vim: Any = pyVmomi.vim
vmodl: Any = pyVmomi.vmodl
SmartConnect: Any = pyVim.connect.SmartConnect

# The base class of every fault vCenter sends; the real class is a Python exception too.
MethodFault: type[BaseException] = pyVmomi.vmodl.MethodFault
