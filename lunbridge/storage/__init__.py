"""The storage server layer: LUNs, initiator groups, maps and snapshots behind one protocol,
one package per backend (`tgt`)."""
