"""The storage vendor/region catalog: data written once, used by validation,
the modal's options and the rendering alike (see agora-recording-api.md)."""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

API_REGIONS: dict[str, str] = {
    "cn": "Mainland China",
    "ap": "Asia Pacific",
    "na": "North America",
    "eu": "Europe",
}


class Vendor(IntEnum):
    QINIU = 0
    AMAZON_S3 = 1
    ALIBABA = 2
    TENCENT = 3
    KINGSOFT = 4
    AZURE = 5
    GOOGLE = 6
    HUAWEI = 7
    BAIDU = 8


@dataclass(frozen=True)
class StorageRegion:
    """One storage region of one vendor; `geography` is the API region it sits
    in (cn, ap, na, eu), or None where no API region covers it."""

    code: int
    name: str
    geography: str | None


@dataclass(frozen=True)
class VendorInfo:
    vendor: Vendor
    name: str
    regions: tuple[StorageRegion, ...]

    @property
    def has_regions(self) -> bool:
        """Azure and Google ignore `region`; Agora expects 0 for them."""
        return bool(self.regions)

    def region(self, code: int) -> StorageRegion | None:
        return next((r for r in self.regions if r.code == code), None)


def _regions(spec: str) -> tuple[StorageRegion, ...]:
    """Parse 'code name... geo' lines; geo '-' means outside cn/ap/na/eu."""
    out = []
    for line in spec.strip().splitlines():
        code, *words, geo = line.split()
        out.append(StorageRegion(int(code), " ".join(words), None if geo == "-" else geo))
    return tuple(out)


CATALOG: dict[Vendor, VendorInfo] = {
    info.vendor: info
    for info in (
        VendorInfo(
            Vendor.QINIU,
            "Qiniu Cloud",
            _regions("""
                0 East China cn
                1 North China cn
                2 South China cn
                3 North America na
                4 Southeast Asia ap
            """),
        ),
        VendorInfo(
            Vendor.AMAZON_S3,
            "Amazon S3",
            _regions("""
                0 US_EAST_1 na
                1 US_EAST_2 na
                2 US_WEST_1 na
                3 US_WEST_2 na
                4 EU_WEST_1 eu
                5 EU_WEST_2 eu
                6 EU_WEST_3 eu
                7 EU_CENTRAL_1 eu
                8 AP_SOUTHEAST_1 ap
                9 AP_SOUTHEAST_2 ap
                10 AP_NORTHEAST_1 ap
                11 AP_NORTHEAST_2 ap
                12 SA_EAST_1 -
                13 CA_CENTRAL_1 na
                14 AP_SOUTH_1 ap
                15 CN_NORTH_1 cn
                16 CN_NORTHWEST_1 cn
                18 AF_SOUTH_1 -
                19 AP_EAST_1 ap
                20 AP_NORTHEAST_3 ap
                21 EU_NORTH_1 eu
                22 ME_SOUTH_1 -
                24 AP_SOUTHEAST_3 ap
                25 EU_SOUTH_1 eu
            """),
        ),
        VendorInfo(
            Vendor.ALIBABA,
            "Alibaba Cloud",
            _regions("""
                0 CN_Hangzhou cn
                1 CN_Shanghai cn
                2 CN_Qingdao cn
                3 CN_Beijing cn
                4 CN_Zhangjiakou cn
                5 CN_Huhehaote cn
                6 CN_Shenzhen cn
                7 CN_Hongkong ap
                8 US_West_1 na
                9 US_East_1 na
                10 AP_Southeast_1 ap
                11 AP_Southeast_2 ap
                12 AP_Southeast_3 ap
                13 AP_Southeast_5 ap
                14 AP_Northeast_1 ap
                15 AP_South_1 ap
                16 EU_Central_1 eu
                17 EU_West_1 eu
                18 EU_East_1 eu
                19 AP_Southeast_6 ap
                20 CN_Heyuan cn
                21 CN_Guangzhou cn
                22 CN_Chengdu cn
            """),
        ),
        VendorInfo(
            Vendor.TENCENT,
            "Tencent Cloud",
            _regions("""
                0 AP_Beijing_1 cn
                1 AP_Beijing cn
                2 AP_Shanghai cn
                3 AP_Guangzhou cn
                4 AP_Chengdu cn
                5 AP_Chongqing cn
                6 AP_Shenzhen_FSI cn
                7 AP_Shanghai_FSI cn
                8 AP_Beijing_FSI cn
                9 AP_Hongkong ap
                10 AP_Singapore ap
                11 AP_Mumbai ap
                12 AP_Seoul ap
                13 AP_Bangkok ap
                14 AP_Tokyo ap
                15 NA_Siliconvalley na
                16 NA_Ashburn na
                17 NA_Toronto na
                18 EU_Frankfurt eu
                19 EU_Moscow eu
            """),
        ),
        VendorInfo(
            Vendor.KINGSOFT,
            "Kingsoft Cloud",
            _regions("""
                0 CN_Hangzhou cn
                1 CN_Shanghai cn
                2 CN_Qingdao cn
                3 CN_Beijing cn
                4 CN_Guangzhou cn
                5 CN_Hongkong ap
                6 JR_Beijing cn
                7 JR_Shanghai cn
                8 NA_Russia_1 eu
                9 NA_Singapore_1 ap
            """),
        ),
        VendorInfo(Vendor.AZURE, "Microsoft Azure", ()),
        VendorInfo(Vendor.GOOGLE, "Google Cloud", ()),
        VendorInfo(
            Vendor.HUAWEI,
            "Huawei Cloud",
            _regions("""
                0 CN_North_1 cn
                1 CN_North_4 cn
                2 CN_East_2 cn
                3 CN_East_3 cn
                4 CN_South_1 cn
                5 CN_Southwest_2 cn
                6 AP_Southeast_1 ap
                7 AP_Southeast_2 ap
                8 AP_Southeast_3 ap
                9 AF_South_1 -
                10 SA_Argentina_1 -
                11 SA_Peru_1 -
                12 NA_Mexico_1 na
                13 SA_Brazil_1 -
                14 LA_South_2 -
                15 SA_Chile_1 -
            """),
        ),
        VendorInfo(
            Vendor.BAIDU,
            "Baidu AI Cloud",
            _regions("""
                0 Beijing cn
                1 Baoding cn
                2 Suzhou cn
                3 Guangzhou cn
                4 Hongkong ap
                5 Singapore ap
                6 Wuhan cn
                7 Shanghai cn
            """),
        ),
    )
}


def vendor_info(vendor: int) -> VendorInfo:
    """The catalog entry of a vendor code; KeyError/ValueError if unknown."""
    return CATALOG[Vendor(vendor)]


def vendor_choices() -> str:
    """'0 Qiniu Cloud, 1 Amazon S3, ...' for error messages."""
    return ", ".join(f"{v.vendor.value} {v.name}" for v in CATALOG.values())


def region_label(vendor: int, region: int) -> str:
    """A storage region as a person reads it: 'US_EAST_1 (0)', or 'n/a'."""
    info = vendor_info(vendor)
    if not info.has_regions:
        return "n/a (not used by this vendor)"
    found = info.region(region)
    return f"{found.name} ({region})" if found else f"unknown ({region})"


def geography_mismatch(api_region: str, vendor: int, region: int) -> bool:
    """True when the bucket's region is known to sit outside `api_region`."""
    info = vendor_info(vendor)
    found = info.region(region) if info.has_regions else None
    return found is not None and found.geography != api_region
