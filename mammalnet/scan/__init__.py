"""Long recordings -> Raven selection tables with an exported model folder (`python -m mammalnet.scan`).

    settings.py   ScanSettings and resolve_settings: hop, thresholds, merge gap, ignored classes, band
    local.py      the local runner: read, score (`mammalnet.detector`), merge into events, write
    ledger.py     what a scan writes in --out (tables, scores, ledger records, combined table, CSV,
                  scan.json) and how it resumes
    beam.py       the same scan as an Apache Beam pipeline (imports apache_beam: only with --runner)
    cli.py        the command line
"""

from mammalnet.scan.local import open_scan, scan_paths
from mammalnet.scan.settings import ScanSettings, resolve_settings

__all__ = ["ScanSettings", "open_scan", "resolve_settings", "scan_paths"]
