"""The lab: real peers (kube-apiserver, etcd, kube-controller-manager, vcsim, tgtd, a QEMU
guest) started on loopback by the project's own code.

`make lab-up` / `make lab-down` and the pytest fixtures both drive this package, so tests run
against exactly what a developer starts by hand.
"""
