"""Whether a compressed student is a compiled model seen through a projection.

A compressed student (thesis ch. 6, `distill.student.fold`) keeps its teacher's compiled weights
frozen and learns only `W` [D, d]: every block reads the student's narrower residual through `Wᵀ`
and writes through `W`. Folded in, each stored tensor is *linear in W* — a write tensor `T` becomes
`T·W`, a read tensor `Wᵀ·T`, the read-out the rows of `W` at the output dims, and the biases of
queries, keys, values and hidden units stay the teacher's. So, given a candidate program compiled
again, one least-squares solve for `W` says whether some projection turns the candidate's weights
into the student's: the certificate for a compressed student, as recompiling to the very weights
is for a standard model. Behaviour alone cannot give it: a program whose tables are read off the
student copies the student's mistakes and agrees with it as well as its teacher did.

The certificate does not depend on the order of the residual stream (a permutation of the
teacher's residual is absorbed into `W`), so it holds whatever a user named the variables.
"""

from __future__ import annotations

import numpy as np

from inverse_tracr.compile.model import POS_EMBED, READOUT, TOKEN_EMBED, CompiledModel, layer_param

#: Tensors [.., D] the teacher writes the residual with (the student's: `T·W`).
_WRITES = ("attn/linear/w", "attn/linear/b", "mlp/linear_2/w", "mlp/linear_2/b")
#: Tensors [D, ..] the teacher reads the residual with (the student's: `Wᵀ·T`).
_READS = ("attn/query/w", "attn/key/w", "attn/value/w", "mlp/linear_1/w")
#: Biases outside the residual, which compression leaves as they are.
_KEPT = ("attn/query/b", "attn/key/b", "attn/value/b", "mlp/linear_1/b")
#: A student is stored in float32: a tensor may differ from the candidate's fold by this share of
#: its largest entry. A wrong table entry moves a whole one-hot row (a share of ~1).
RTOL = 1e-4


def projects(teacher: CompiledModel, student: CompiledModel, rtol: float = RTOL) -> bool:
    """Whether `student` (a model with a read-out) is `teacher` folded through some `W` [D, d]."""
    t, s = teacher.params, student.params
    layers = teacher.layout.num_layers
    if (not student.layout.readout or teacher.layout.readout or student.layout.num_layers != layers
            or teacher.layout.causal != student.layout.causal or t.keys() != s.keys() - {READOUT} or READOUT not in s
            or len(teacher.layout.output_dims) != s[READOUT].shape[1]):
        return False
    kept = [layer_param(i, name) for i in range(layers) for name in _KEPT]
    if any(t[k].shape != s[k].shape or not np.allclose(t[k], s[k], rtol=0, atol=rtol * _scale(s[k])) for k in kept):
        return False
    width = teacher.layout.residual_width
    pairs = [(t[TOKEN_EMBED], s[TOKEN_EMBED]), (t[POS_EMBED], s[POS_EMBED])]
    pairs += [(np.atleast_2d(t[k]), np.atleast_2d(s[k])) for i in range(layers) for k in (layer_param(i, n) for n in _WRITES)]
    pairs += [(t[k].T, s[k].T) for i in range(layers) for k in (layer_param(i, n) for n in _READS)]
    pairs.append((np.eye(width)[list(teacher.layout.output_dims)], s[READOUT].T))
    if any(a.shape[0] != b.shape[0] or a.shape[1] != width or b.shape[1] != pairs[0][1].shape[1] for a, b in pairs):
        return False
    a = np.concatenate([a for a, _ in pairs]).astype(np.float64)
    b = np.concatenate([b for _, b in pairs]).astype(np.float64)
    w = np.linalg.lstsq(a, b, rcond=None)[0]
    return all(np.abs(x @ w - y).max(initial=0.0) <= rtol * _scale(y) for x, y in pairs)


def _scale(tensor: np.ndarray) -> float:
    return max(1.0, float(np.abs(tensor).max(initial=0.0)))
