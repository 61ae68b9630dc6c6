"""IR graph -> TVM Relax module.

Ops that carry the time in recommendation models (dense layers, embedding lookups, interactions,
attention, recurrent cells) are emitted as calls to recc's own hand-scheduled TIR kernels
(kernels/cpu/); the remaining small ops go through Relax's operators and TVM's default legalization
(generic.py). The Relax function takes the user inputs first, then every weight as a runtime argument
(embedding tables are never constants in the library); only tiny constants (index lists, scalars) are
embedded.

Weights may be re-laid out for their kernel (a dense weight is pre-packed); `Lowered.weights` holds the
arrays in the order the function expects them, under their (possibly new) names.

Modules: driver.py (lower(), the functions emitted, the op -> lowering registry), context.py (what
lowering carries from op to op), checks.py (the ids range check), and one module per op family
(dense, embedding, interaction, attention, recurrent; generic for everything else). Adding an op: a
module with a LOWERINGS table, listed in driver.OP_MODULES.
"""
