"""A cache prefetch hint for numba kernels whose rows are read in a random order.

Embedding tables of a few hundred thousand rows do not fit in the CPU caches, and a kernel that
visits rows in a random order (a shuffled batch) waits for memory at every row.
:func:`prefetch` asks the CPU to start loading the cache line of one element of a 2-D array (or
of element ``row`` of a 1-D one) without waiting for it, so a loop can request the rows of a few
iterations ahead and find them loaded when it gets there. It is LLVM's ``llvm.prefetch`` (read,
high locality, data cache) and changes no value; call it only with indices inside the array.
"""

from __future__ import annotations

from typing import Any

import llvmlite.binding as llvm
from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

#: the intrinsic's name: LLVM 15 and later have opaque pointers (``p0``), older ones typed (``p0i8``)
_NAME = "llvm.prefetch.p0" if llvm.llvm_version_info[0] >= 15 else "llvm.prefetch.p0i8"


@intrinsic
def prefetch(typingctx: Any, array: types.Array, row: types.Integer, col: types.Integer) -> Any:
    """``prefetch(array, row, col)`` in a numba function: start loading the cache line holding
    ``array[row, col]`` (``array[row]`` for a 1-D array, ``col`` then ignored)."""
    if not isinstance(array, types.Array) or array.ndim not in (1, 2):
        return None
    sig = types.void(array, row, col)

    def codegen(context: Any, builder: Any, signature: Any, args: Any) -> Any:
        aryty = signature.args[0]
        ary = context.make_array(aryty)(context, builder, args[0])
        index = [args[1], args[2]] if aryty.ndim == 2 else [args[1]]
        ptr = cgutils.get_item_pointer(context, builder, aryty, ary, index, wraparound=False)
        byte_ptr = ir.IntType(8).as_pointer()
        i32 = ir.IntType(32)
        fnty = ir.FunctionType(ir.VoidType(), [byte_ptr, i32, i32, i32])
        fn = cgutils.get_or_insert_function(builder.module, fnty, _NAME)
        # read (0), high temporal locality (3), data cache (1)
        builder.call(
            fn,
            [builder.bitcast(ptr, byte_ptr), ir.Constant(i32, 0), ir.Constant(i32, 3), ir.Constant(i32, 1)],
        )
        return context.get_dummy_value()

    return sig, codegen
