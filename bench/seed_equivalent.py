#!/usr/bin/env python3
"""The seed script's work in Python 3, for the System()-mode benchmark only.

Same imports and the same steps as the original extsecurity.py (design.md §2): read the
JSON request from argv, apply the five rules with the seed's settings, write one
logging line to the log file, exit. The tarpit is off, as in the Rust run.
"""
import json
import logging
import re
import sys
import time

settings = {
    "logfile_path": sys.argv[1],
    "default_sleep_protection_time_sec": 0,
    "alert_if_callerid_num_is_not_numeric": True,
    "alert_if_dialed_exten_is_not_numeric": True,
    "alert_if_dialed_exten_lenghts_less_than": 10,
    "alert_if_dialed_exten_lenghts_more_than": 14,
    "automatic_block_attempts_to_extensions": [r"\d{1,3}"],
}

logging.basicConfig(
    filename=settings["logfile_path"],
    level=logging.INFO,
    format="%(asctime)s.%(msecs)03d %(levelname)s %(message)s",
    datefmt="%Y-%m-%d %H:%M:%S",
)


def main():
    request = " ".join(sys.argv[2:])
    try:
        call = json.loads(request)
    except ValueError:
        logging.critical("Request line: %s", request, exc_info=True)
        sys.exit(255)
    num = call.get("callerid_num", "")
    exten = call.get("dest_exten", "")
    reason = "ok"
    if settings["alert_if_callerid_num_is_not_numeric"] and not num.replace("+", "").isdigit():
        reason = "wrong_callerid_num"
    elif settings["alert_if_dialed_exten_is_not_numeric"] and not exten.replace("+", "").isdigit():
        reason = "wrong_exten_type"
    elif len(exten) < settings["alert_if_dialed_exten_lenghts_less_than"]:
        reason = "wrong_exten_min_lenghts(%d)" % settings["alert_if_dialed_exten_lenghts_less_than"]
    elif len(exten) > settings["alert_if_dialed_exten_lenghts_more_than"]:
        reason = "wrong_exten_max_lenghts(%d)" % settings["alert_if_dialed_exten_lenghts_more_than"]
    else:
        for pattern in settings["automatic_block_attempts_to_extensions"]:
            if re.match(pattern + "$", exten):
                reason = "exension_banned"
    message = "ip=%s reason=%s callerid_num=%s callerid_name=%r dest_exten=%r peer_name=%r user_agent=%r" % (
        call.get("ip"), reason, num, call.get("callerid_name", ""), exten,
        call.get("peer_name", ""), call.get("user_agent", ""))
    if reason == "ok":
        logging.info(message)
    else:
        logging.error(message)
        time.sleep(settings["default_sleep_protection_time_sec"])


main()
