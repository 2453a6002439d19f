"""The meta-model: weights in, program out (tokenisation, model, training, decompiling)."""
