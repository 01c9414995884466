#!/usr/bin/env python3
"""The outbound check's destination classes, decided by Python `phonenumbers` (the
independent oracle of tests/it/number_oracle.rs; README "Toll fraud", design §3g).

Reads lines `REGION<TAB>HOME_REGIONS(comma-separated)<TAB>DIALLED` on standard input and
prints one class a line: emergency, premium, international, mobile, national or
malformed. It decides with libphonenumber's own parser, validity, types, regions and
short-number costs, not with extsecurity's rules.
"""

import sys

import phonenumbers as pn
from phonenumbers import PhoneNumberType as T
from phonenumbers import shortnumberinfo as sn
from phonenumbers.phonenumberutil import ValidationResult

PREMIUM = {T.PREMIUM_RATE, T.SHARED_COST, T.UAN, T.PERSONAL_NUMBER}


def classify(region, homes, dialled):
    if sn.is_emergency_number(dialled, region):
        return "emergency"
    try:
        number = pn.parse(dialled, region, keep_raw_input=True)
    except pn.NumberParseException:
        return "malformed"
    home_code = pn.country_code_for_region(region)
    national_prefix = pn.PhoneMetadata.metadata_for_region(region).national_prefix or ""
    # libphonenumber reads a leading calling code even without + or a prefix
    # ("499914137" in Germany as +49 9914137) and then drops further prefixes; a carrier
    # dials those digits as they are. Only North America's "1", which is both, stands.
    if number.country_code_source == pn.CountryCodeSource.FROM_NUMBER_WITHOUT_PLUS_SIGN:
        read = len(str(number.country_code)) + len(pn.national_significant_number(number))
        if not (national_prefix and dialled.startswith(national_prefix)) or read != len(dialled):
            return "malformed"
    if pn.is_valid_number(number):
        kind = pn.number_type(number)
        if kind in PREMIUM:
            return "premium"
        if number.country_code == home_code and pn.region_code_for_number(number) in homes:
            return "mobile" if kind == T.MOBILE else "national"
        return "international"
    if number.country_code != home_code:
        known = pn.region_codes_for_country_code(number.country_code) != ("ZZ",)
        return "international" if known else "malformed"
    # Short and local numbers are dialled without a prefix: libphonenumber keeps a
    # national prefix it cannot strip (UK "0182") and then calls the digits a possible
    # local number, which no carrier dials.
    bare = (number.country_code_source == pn.CountryCodeSource.FROM_DEFAULT_COUNTRY
            and not (national_prefix and dialled.startswith(national_prefix)))
    if not bare:
        return "malformed"
    if any(sn.expected_cost_for_region(number, r) == sn.ShortNumberCost.PREMIUM_RATE
           for r in homes):
        return "premium"
    if any(sn.is_valid_short_number_for_region(number, r) for r in homes):
        return "national"
    if pn.is_possible_number_with_reason(number) == ValidationResult.IS_POSSIBLE_LOCAL_ONLY:
        return "national"
    return "malformed"


def main():
    for line in sys.stdin:
        region, homes, dialled = line.rstrip("\n").split("\t")
        print(classify(region, homes.split(","), dialled))


if __name__ == "__main__":
    main()
