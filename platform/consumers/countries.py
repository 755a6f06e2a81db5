"""Country of residence: ISO 3166-1 codes from codes, names and addresses.

Profiles arrive with a country code (`SG`, `SGP`), an English country name
(`United Kingdom`), a common alias (`EIRE`, `UK`, `USA`, `RSA`) or a whole
address; only the alpha-2 code is ever stored. Addresses are read from the
end (the country is conventionally the last line) and are never stored.
"""

from __future__ import annotations

import re
import unicodedata
from functools import lru_cache

# alpha-2, alpha-3, English short name (ISO 3166-1, with the common short forms).
_ISO_3166 = """
AD AND Andorra|AE ARE United Arab Emirates|AF AFG Afghanistan|AG ATG Antigua and Barbuda|AI AIA Anguilla
AL ALB Albania|AM ARM Armenia|AO AGO Angola|AQ ATA Antarctica|AR ARG Argentina|AS ASM American Samoa
AT AUT Austria|AU AUS Australia|AW ABW Aruba|AX ALA Aland Islands|AZ AZE Azerbaijan
BA BIH Bosnia and Herzegovina|BB BRB Barbados|BD BGD Bangladesh|BE BEL Belgium|BF BFA Burkina Faso
BG BGR Bulgaria|BH BHR Bahrain|BI BDI Burundi|BJ BEN Benin|BL BLM Saint Barthelemy|BM BMU Bermuda
BN BRN Brunei Darussalam|BO BOL Bolivia|BQ BES Bonaire, Sint Eustatius and Saba|BR BRA Brazil|BS BHS Bahamas
BT BTN Bhutan|BV BVT Bouvet Island|BW BWA Botswana|BY BLR Belarus|BZ BLZ Belize|CA CAN Canada
CC CCK Cocos (Keeling) Islands|CD COD Democratic Republic of the Congo|CF CAF Central African Republic
CG COG Congo|CH CHE Switzerland|CI CIV Cote d'Ivoire|CK COK Cook Islands|CL CHL Chile|CM CMR Cameroon
CN CHN China|CO COL Colombia|CR CRI Costa Rica|CU CUB Cuba|CV CPV Cabo Verde|CW CUW Curacao
CX CXR Christmas Island|CY CYP Cyprus|CZ CZE Czechia|DE DEU Germany|DJ DJI Djibouti|DK DNK Denmark
DM DMA Dominica|DO DOM Dominican Republic|DZ DZA Algeria|EC ECU Ecuador|EE EST Estonia|EG EGY Egypt
EH ESH Western Sahara|ER ERI Eritrea|ES ESP Spain|ET ETH Ethiopia|FI FIN Finland|FJ FJI Fiji
FK FLK Falkland Islands|FM FSM Micronesia|FO FRO Faroe Islands|FR FRA France|GA GAB Gabon|GB GBR United Kingdom
GD GRD Grenada|GE GEO Georgia|GF GUF French Guiana|GG GGY Guernsey|GH GHA Ghana|GI GIB Gibraltar|GL GRL Greenland
GM GMB Gambia|GN GIN Guinea|GP GLP Guadeloupe|GQ GNQ Equatorial Guinea|GR GRC Greece
GS SGS South Georgia and the South Sandwich Islands|GT GTM Guatemala|GU GUM Guam|GW GNB Guinea-Bissau
GY GUY Guyana|HK HKG Hong Kong|HM HMD Heard Island and McDonald Islands|HN HND Honduras|HR HRV Croatia
HT HTI Haiti|HU HUN Hungary|ID IDN Indonesia|IE IRL Ireland|IL ISR Israel|IM IMN Isle of Man|IN IND India
IO IOT British Indian Ocean Territory|IQ IRQ Iraq|IR IRN Iran|IS ISL Iceland|IT ITA Italy|JE JEY Jersey
JM JAM Jamaica|JO JOR Jordan|JP JPN Japan|KE KEN Kenya|KG KGZ Kyrgyzstan|KH KHM Cambodia|KI KIR Kiribati
KM COM Comoros|KN KNA Saint Kitts and Nevis|KP PRK North Korea|KR KOR South Korea|KW KWT Kuwait
KY CYM Cayman Islands|KZ KAZ Kazakhstan|LA LAO Laos|LB LBN Lebanon|LC LCA Saint Lucia|LI LIE Liechtenstein
LK LKA Sri Lanka|LR LBR Liberia|LS LSO Lesotho|LT LTU Lithuania|LU LUX Luxembourg|LV LVA Latvia|LY LBY Libya
MA MAR Morocco|MC MCO Monaco|MD MDA Moldova|ME MNE Montenegro|MF MAF Saint Martin (French part)|MG MDG Madagascar
MH MHL Marshall Islands|MK MKD North Macedonia|ML MLI Mali|MM MMR Myanmar|MN MNG Mongolia|MO MAC Macao
MP MNP Northern Mariana Islands|MQ MTQ Martinique|MR MRT Mauritania|MS MSR Montserrat|MT MLT Malta
MU MUS Mauritius|MV MDV Maldives|MW MWI Malawi|MX MEX Mexico|MY MYS Malaysia|MZ MOZ Mozambique|NA NAM Namibia
NC NCL New Caledonia|NE NER Niger|NF NFK Norfolk Island|NG NGA Nigeria|NI NIC Nicaragua|NL NLD Netherlands
NO NOR Norway|NP NPL Nepal|NR NRU Nauru|NU NIU Niue|NZ NZL New Zealand|OM OMN Oman|PA PAN Panama|PE PER Peru
PF PYF French Polynesia|PG PNG Papua New Guinea|PH PHL Philippines|PK PAK Pakistan|PL POL Poland
PM SPM Saint Pierre and Miquelon|PN PCN Pitcairn|PR PRI Puerto Rico|PS PSE Palestine|PT PRT Portugal|PW PLW Palau
PY PRY Paraguay|QA QAT Qatar|RE REU Reunion|RO ROU Romania|RS SRB Serbia|RU RUS Russia|RW RWA Rwanda
SA SAU Saudi Arabia|SB SLB Solomon Islands|SC SYC Seychelles|SD SDN Sudan|SE SWE Sweden|SG SGP Singapore
SH SHN Saint Helena, Ascension and Tristan da Cunha|SI SVN Slovenia|SJ SJM Svalbard and Jan Mayen|SK SVK Slovakia
SL SLE Sierra Leone|SM SMR San Marino|SN SEN Senegal|SO SOM Somalia|SR SUR Suriname|SS SSD South Sudan
ST STP Sao Tome and Principe|SV SLV El Salvador|SX SXM Sint Maarten (Dutch part)|SY SYR Syria|SZ SWZ Eswatini
TC TCA Turks and Caicos Islands|TD TCD Chad|TF ATF French Southern Territories|TG TGO Togo|TH THA Thailand
TJ TJK Tajikistan|TK TKL Tokelau|TL TLS Timor-Leste|TM TKM Turkmenistan|TN TUN Tunisia|TO TON Tonga|TR TUR Turkiye
TT TTO Trinidad and Tobago|TV TUV Tuvalu|TW TWN Taiwan|TZ TZA Tanzania|UA UKR Ukraine|UG UGA Uganda
UM UMI United States Minor Outlying Islands|US USA United States|UY URY Uruguay|UZ UZB Uzbekistan
VA VAT Holy See|VC VCT Saint Vincent and the Grenadines|VE VEN Venezuela|VG VGB British Virgin Islands
VI VIR United States Virgin Islands|VN VNM Viet Nam|VU VUT Vanuatu|WF WLF Wallis and Futuna|WS WSM Samoa
YE YEM Yemen|YT MYT Mayotte|ZA ZAF South Africa|ZM ZMB Zambia|ZW ZWE Zimbabwe
"""

# Other spellings seen in real data (the UCI Online Retail file says EIRE and RSA).
_ALIASES = {
    "GB": "UK, Great Britain, Britain, England, Scotland, Wales, Northern Ireland, "
    "United Kingdom of Great Britain and Northern Ireland",
    "IE": "EIRE, Republic of Ireland",
    "US": "USA, United States of America, America, U.S.A., U.S.",
    "ZA": "RSA, Republic of South Africa",
    "KR": "Korea, Republic of Korea, Korea Republic of",
    "KP": "Democratic People's Republic of Korea",
    "RU": "Russian Federation",
    "VN": "Vietnam",
    "CZ": "Czech Republic",
    "NL": "Holland, The Netherlands",
    "MO": "Macau",
    "TW": "Taiwan Province of China",
    "IR": "Islamic Republic of Iran",
    "LA": "Lao People's Democratic Republic, Lao PDR",
    "SY": "Syrian Arab Republic",
    "BO": "Plurinational State of Bolivia",
    "VE": "Bolivarian Republic of Venezuela",
    "TZ": "United Republic of Tanzania",
    "MD": "Republic of Moldova",
    "BN": "Brunei",
    "CI": "Ivory Coast",
    "CV": "Cape Verde",
    "SZ": "Swaziland",
    "MM": "Burma",
    "TR": "Turkey",
    "MK": "Macedonia",
    "PS": "State of Palestine",
    "VA": "Vatican, Vatican City",
    "TL": "East Timor",
    "FM": "Federated States of Micronesia",
    "CD": "DR Congo, DRC, Congo-Kinshasa",
    "CG": "Republic of the Congo, Congo-Brazzaville",
    "AE": "UAE",
    "HK": "Hong Kong SAR",
    "PH": "The Philippines",
    "KN": "St Kitts and Nevis",
    "LC": "St Lucia",
    "VC": "St Vincent and the Grenadines",
    "FK": "Falkland Islands (Malvinas)",
}

_PUNCTUATION = re.compile(r"[^\w\s]")
_SPACES = re.compile(r"\s+")
_ADDRESS_PARTS = re.compile(r"[,\n;]")
_POSTCODE_EDGE = re.compile(r"^[\d\s-]+|[\d\s-]+$")


def _fold(text: str) -> str:
    """Case, accents, punctuation and spacing folded away: 'Côte d’Ivoire' == 'cote divoire'."""
    decomposed = unicodedata.normalize("NFKD", text)
    plain = "".join(c for c in decomposed if not unicodedata.combining(c)).casefold()
    plain = plain.replace("&", " and ").replace("'", "").replace("’", "")
    plain = _SPACES.sub(" ", _PUNCTUATION.sub(" ", plain)).strip()
    return plain.removeprefix("the ")


@lru_cache(maxsize=1)
def _lookup() -> tuple[frozenset[str], dict[str, str]]:
    alpha2: set[str] = set()
    names: dict[str, str] = {}
    for entry in _ISO_3166.replace("\n", "|").split("|"):
        entry = entry.strip()
        if not entry:
            continue
        code2, code3, name = entry.split(" ", 2)
        alpha2.add(code2)
        names[code3.casefold()] = code2
        names[_fold(name)] = code2
    for code2, aliases in _ALIASES.items():
        for alias in aliases.split(", "):
            names[_fold(alias)] = code2
    return frozenset(alpha2), names


def country_code(value: str, *, allow_alpha2: bool = True) -> str | None:
    """ISO 3166-1 alpha-2 for a code (alpha-2 or alpha-3), a name or an alias; None when not a country."""
    text = str(value).strip()
    if not text:
        return None
    alpha2, names = _lookup()
    upper = text.upper()
    if len(upper) == 2 and upper in alpha2:
        return upper if allow_alpha2 else None
    if upper == "UK":
        return "GB"
    return names.get(_fold(text)) if len(text) > 2 else None


def country_from_address(address: str) -> str | None:
    """The country of a postal address, read from its last part backwards; None when none is recognisable.

    Two-letter parts are not taken for country codes here: in an address they
    are usually a state ("San Jose, CA 95112" is not Canada).
    """
    parts = [p.strip() for p in _ADDRESS_PARTS.split(str(address)) if p.strip()]
    for part in reversed(parts):
        code = country_code(part, allow_alpha2=False)
        if code is None:
            # "Singapore 018956", "75001 France": the postcode sits beside the country.
            code = country_code(_POSTCODE_EDGE.sub("", part), allow_alpha2=False)
        if code is not None:
            return code
    return None
