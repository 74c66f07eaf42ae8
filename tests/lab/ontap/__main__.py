"""`python -m tests.lab.ontap …`: run the ONTAP REST simulator in the foreground until SIGTERM.

The options say what the simulated SVM is (name, aggregates, data interfaces), where it keeps
its state, how it serves (address, TLS files, one user whose password is read from a file, so
that it never shows in a process list) and which tgtd serves its LUNs (control number, portal,
and the IQN prefix of the targets it may touch). On start it applies its state to tgtd again.
"""

from __future__ import annotations

import argparse
import logging
import signal
import ssl
import sys
import threading
from pathlib import Path
from types import FrameType

from tests.lab.ontap.server import SimServer
from tests.lab.ontap.sim import Config, Sim

log = logging.getLogger("ontap-sim")


def _address(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    return host, int(port)


def parse(argv: list[str]) -> tuple[Config, tuple[str, int], Path, Path]:
    p = argparse.ArgumentParser(prog="python -m tests.lab.ontap", description=__doc__)
    p.add_argument("--state-dir", type=Path, required=True)
    p.add_argument("--listen", type=_address, required=True, help="HOST:PORT to serve HTTPS on")
    p.add_argument("--cert", type=Path, required=True)
    p.add_argument("--key", type=Path, required=True)
    p.add_argument("--svm", required=True)
    p.add_argument("--username", required=True)
    p.add_argument("--password-file", type=Path, required=True)
    p.add_argument("--tgt-control", type=int, required=True, help="tgtd's control number (tgtadm -C)")
    p.add_argument("--tgt-portal", required=True, help="HOST:PORT of that tgtd's iSCSI portal")
    p.add_argument(
        "--iqn-prefix", required=True, help="the tgt targets of this simulator are <prefix><igroup>"
    )
    p.add_argument("--data-interface", action="append", required=True, help="HOST:PORT; once per data LIF")
    p.add_argument("--aggregate", action="append", help="an aggregate name (default: aggr1)")
    p.add_argument("--job-delay", type=float, default=0.2, help="seconds before a job's work runs")
    p.add_argument("--page-size", type=int, help="at most this many records per collection page")
    p.add_argument("--lun-size-granule", type=int, default=1 << 20, help="LUN sizes round up to this")
    p.add_argument("--lun-size-extra", type=int, default=0, help="bytes added to every rounded LUN size")
    p.add_argument(
        "--lun-clone-split-seconds",
        type=float,
        default=0.0,
        help="how long a LUN clone keeps its snapshot busy",
    )
    p.add_argument("--cluster-name", default="lunbridge-sim")
    args = p.parse_args(argv)
    password = args.password_file.read_text(encoding="utf-8").rstrip("\n")
    config = Config(
        state_dir=args.state_dir,
        svm=args.svm,
        username=args.username,
        password=password,
        tgt_control=args.tgt_control,
        tgt_portal=args.tgt_portal,
        iqn_prefix=args.iqn_prefix,
        data_interfaces=tuple(args.data_interface),
        aggregates=tuple(args.aggregate or ["aggr1"]),
        job_delay=args.job_delay,
        page_size=args.page_size,
        lun_size_granule=args.lun_size_granule,
        lun_size_extra=args.lun_size_extra,
        lun_clone_split_seconds=args.lun_clone_split_seconds,
        cluster_name=args.cluster_name,
    )
    return config, args.listen, args.cert, args.key


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s", stream=sys.stdout)
    config, listen, cert, key = parse(sys.argv[1:] if argv is None else argv)
    sim = Sim(config)
    with sim.lock:
        sim.commit()  # tgtd keeps nothing across its own restarts: put this state back
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server = SimServer(listen, sim, context)

    def stop(signum: int, frame: FrameType | None) -> None:
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    log.info(
        "ONTAP simulator for SVM %s on https://%s:%d (state %s, tgtd control %d, prefix %s)",
        config.svm, listen[0], listen[1], config.state_dir, config.tgt_control, config.iqn_prefix,
    )  # fmt: skip
    server.serve_forever(poll_interval=0.2)
    server.server_close()
    log.info("stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
