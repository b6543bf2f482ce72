"""The storage vendor/region catalog: data written once, used by validation,
the modal's options and the rendering alike (see agora-recording-api.md)."""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

from bot.naming import KEY_RULE, NameRule, dashed

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
    in (cn, ap, na, eu), or None where no API region covers it; `s3_region` is
    the vendor's own region id (S3 signing region and endpoint host part);
    `host`, where set, is the endpoint host when it does not follow the
    vendor's template."""

    code: int
    name: str
    geography: str | None
    s3_region: str = ""
    host: str | None = None


@dataclass(frozen=True)
class VendorInfo:
    vendor: Vendor
    name: str
    regions: tuple[StorageRegion, ...]
    # What the vendor accepts for the bucket as typed: it becomes part of the URL.
    bucket_rule: NameRule
    # The storage endpoint: `{region}` is the region's s3_region; for Azure `{account}` is the account name.
    host_template: str = ""
    # Path-style addressing (https://host/bucket/key) instead of virtual-host (https://bucket.host/key).
    path_style: bool = False
    access_key_rule: NameRule = KEY_RULE
    secret_key_rule: NameRule = KEY_RULE

    @property
    def has_regions(self) -> bool:
        """Azure and Google ignore `region`; Agora expects 0 for them."""
        return bool(self.regions)

    def region(self, code: int) -> StorageRegion | None:
        return next((r for r in self.regions if r.code == code), None)

    def endpoint(self, region_code: int) -> tuple[str, str]:
        """(host, signing region) of the storage endpoint for a region of this vendor."""
        found = self.region(region_code)
        if found is None:
            return self.host_template, "us-east-1"  # region-less vendors sign as S3's default region
        return found.host or self.host_template.format(region=found.s3_region), found.s3_region

    def request_host(self, region_code: int, bucket: str, account: str = "") -> str:
        """The host a storage request goes to, for names that pass this vendor's rules:
        the catalog's host, with the bucket as a leading DNS label where the vendor
        uses virtual hosts and the name has no '.' (else the bucket goes in the path),
        or for Azure the account as that label."""
        if self.vendor == Vendor.AZURE:
            return self.host_template.format(account=account)
        host, _ = self.endpoint(region_code)
        return host if self.path_style or "." in bucket else f"{bucket}.{host}"


def _regions(spec: str) -> tuple[StorageRegion, ...]:
    """Parse 'code name... geo s3_region [host]' lines; geo '-' means outside
    cn/ap/na/eu; a last field with a dot is the host, when not the template's."""
    out = []
    for line in spec.strip().splitlines():
        fields = line.split("#")[0].split()
        host = fields.pop() if "." in fields[-1] else None
        code, *words, geo, s3_region = fields
        out.append(StorageRegion(int(code), " ".join(words), None if geo == "-" else geo, s3_region, host))
    return tuple(out)


# Bucket naming rules, from each vendor's documentation (checked 2026-12): they keep a
# typed name from becoming anything but a name at the vendor's own host.
# Amazon S3: general purpose bucket naming rules.
_AMAZON_BUCKET = NameRule(
    "bucket names",
    r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]",
    "3-63 lowercase letters, digits, '.' and '-', starting and ending with a letter or digit, "
    "with no '..' and not an IP address",
    forbidden=("..",),
    reserved_prefixes=("xn--", "sthree-", "amzn-s3-demo-"),
    reserved_suffixes=("-s3alias", "--ol-s3", ".mrap", "--x-s3"),
    not_ip=True,
)
# Huawei OBS: as S3, and no '.' next to '-'.
_HUAWEI_BUCKET = NameRule(
    "bucket names",
    r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]",
    "3-63 lowercase letters, digits, '.' and '-', starting and ending with a letter or digit, "
    "with no '..', '.-' or '-.' and not an IP address",
    forbidden=("..", ".-", "-."),
    not_ip=True,
)
# Google Cloud Storage: '_' allowed; up to 222 characters when dotted, each part at most 63.
_GOOGLE_BUCKET = NameRule(
    "bucket names",
    r"[a-z0-9][a-z0-9._-]{1,220}[a-z0-9]",
    "3-63 lowercase letters, digits, '-', '_' and '.' (up to 222 when dotted, each part at most 63), "
    "starting and ending with a letter or digit, with no '..', not containing 'google' and not an IP address",
    max_length=222,
    max_label=63,
    forbidden=("..", "google"),
    reserved_prefixes=("goog",),
    not_ip=True,
)
# Tencent COS: <name>-<APPID>; the name 1-50 of a-z, 0-9 and '-', not starting or ending with '-'.
_TENCENT_BUCKET = NameRule(
    "bucket names",
    r"[a-z0-9](?:[a-z0-9-]{0,48}[a-z0-9])?-[0-9]{1,12}",
    "<name>-<APPID>, e.g. examplebucket-1250000000: a name of 1-50 lowercase letters, digits and '-' "
    "(not starting or ending with '-'), then '-' and the APPID's digits",
)
# Azure: containers 3-63 of a-z, 0-9 and '-', every '-' between letters or digits;
# the account name (the access key) is 3-24 lowercase letters and digits; the account key is base64.
_AZURE_CONTAINER = NameRule(
    "container names",
    r"[a-z0-9][a-z0-9-]{1,61}[a-z0-9]",
    "3-63 lowercase letters, digits and '-', starting and ending with a letter or digit, with no '--'",
    forbidden=("--",),
)
_AZURE_ACCOUNT = NameRule(
    "storage account names (the access key)", r"[a-z0-9]{3,24}", "3-24 lowercase letters and digits", max_length=24
)
_AZURE_KEY = NameRule(
    "account keys (the secret key)",
    r"(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=|[A-Za-z0-9+/]{4})",
    f"base64, as the Azure portal shows them (letters, digits, '+' and '/', often ending in '='), "
    f"at most {KEY_RULE.max_length} characters",
    max_length=KEY_RULE.max_length,
)

CATALOG: dict[Vendor, VendorInfo] = {
    info.vendor: info
    for info in (
        VendorInfo(
            Vendor.QINIU,
            "Qiniu Cloud",
            _regions("""
                0 East China cn cn-east-1
                1 North China cn cn-north-1
                2 South China cn cn-south-1
                3 North America na us-north-1
                4 Southeast Asia ap ap-southeast-1
            """),
            # S3 hosts not confirmed by a public list (its upload hosts up-z0/z1/z2/na0/as0 were)
            host_template="s3.{region}.qiniucs.com",
            bucket_rule=dashed(),  # Qiniu Kodo: 3-63 of a-z, 0-9 and '-'
        ),
        VendorInfo(
            Vendor.AMAZON_S3,
            "Amazon S3",
            _regions("""
                0 US_EAST_1 na us-east-1
                1 US_EAST_2 na us-east-2
                2 US_WEST_1 na us-west-1
                3 US_WEST_2 na us-west-2
                4 EU_WEST_1 eu eu-west-1
                5 EU_WEST_2 eu eu-west-2
                6 EU_WEST_3 eu eu-west-3
                7 EU_CENTRAL_1 eu eu-central-1
                8 AP_SOUTHEAST_1 ap ap-southeast-1
                9 AP_SOUTHEAST_2 ap ap-southeast-2
                10 AP_NORTHEAST_1 ap ap-northeast-1
                11 AP_NORTHEAST_2 ap ap-northeast-2
                12 SA_EAST_1 - sa-east-1
                13 CA_CENTRAL_1 na ca-central-1
                14 AP_SOUTH_1 ap ap-south-1
                15 CN_NORTH_1 cn cn-north-1 s3.cn-north-1.amazonaws.com.cn
                16 CN_NORTHWEST_1 cn cn-northwest-1 s3.cn-northwest-1.amazonaws.com.cn
                18 AF_SOUTH_1 - af-south-1
                19 AP_EAST_1 ap ap-east-1
                20 AP_NORTHEAST_3 ap ap-northeast-3
                21 EU_NORTH_1 eu eu-north-1
                22 ME_SOUTH_1 - me-south-1
                24 AP_SOUTHEAST_3 ap ap-southeast-3
                25 EU_SOUTH_1 eu eu-south-1
            """),
            # confirmed: AWS's regional endpoint table (China: .amazonaws.com.cn)
            host_template="s3.{region}.amazonaws.com",
            bucket_rule=_AMAZON_BUCKET,
        ),
        VendorInfo(
            Vendor.ALIBABA,
            "Alibaba Cloud",
            _regions("""
                0 CN_Hangzhou cn cn-hangzhou
                1 CN_Shanghai cn cn-shanghai
                2 CN_Qingdao cn cn-qingdao
                3 CN_Beijing cn cn-beijing
                4 CN_Zhangjiakou cn cn-zhangjiakou
                5 CN_Huhehaote cn cn-huhehaote
                6 CN_Shenzhen cn cn-shenzhen
                7 CN_Hongkong ap cn-hongkong
                8 US_West_1 na us-west-1
                9 US_East_1 na us-east-1
                10 AP_Southeast_1 ap ap-southeast-1
                11 AP_Southeast_2 ap ap-southeast-2
                12 AP_Southeast_3 ap ap-southeast-3
                13 AP_Southeast_5 ap ap-southeast-5
                14 AP_Northeast_1 ap ap-northeast-1
                15 AP_South_1 ap ap-south-1
                16 EU_Central_1 eu eu-central-1
                17 EU_West_1 eu eu-west-1
                18 EU_East_1 eu me-east-1  # Agora's EU_East_1: OSS has no eu-east-1; me-east-1 (Dubai) assumed
                19 AP_Southeast_6 ap ap-southeast-6
                20 CN_Heyuan cn cn-heyuan
                21 CN_Guangzhou cn cn-guangzhou
                22 CN_Chengdu cn cn-chengdu
            """),
            # confirmed: OSS regions-and-endpoints table (S3-compatible on the same hosts)
            host_template="oss-{region}.aliyuncs.com",
            bucket_rule=dashed(),  # OSS bucket naming conventions
        ),
        VendorInfo(
            Vendor.TENCENT,
            "Tencent Cloud",
            _regions("""
                0 AP_Beijing_1 cn ap-beijing-1
                1 AP_Beijing cn ap-beijing
                2 AP_Shanghai cn ap-shanghai
                3 AP_Guangzhou cn ap-guangzhou
                4 AP_Chengdu cn ap-chengdu
                5 AP_Chongqing cn ap-chongqing
                6 AP_Shenzhen_FSI cn ap-shenzhen-fsi  # not confirmed
                7 AP_Shanghai_FSI cn ap-shanghai-fsi  # not confirmed
                8 AP_Beijing_FSI cn ap-beijing-fsi  # not confirmed
                9 AP_Hongkong ap ap-hongkong
                10 AP_Singapore ap ap-singapore
                11 AP_Mumbai ap ap-mumbai
                12 AP_Seoul ap ap-seoul
                13 AP_Bangkok ap ap-bangkok
                14 AP_Tokyo ap ap-tokyo
                15 NA_Siliconvalley na na-siliconvalley
                16 NA_Ashburn na na-ashburn
                17 NA_Toronto na na-toronto  # not confirmed
                18 EU_Frankfurt eu eu-frankfurt
                19 EU_Moscow eu eu-moscow  # not confirmed
            """),
            # confirmed: COS's region table (<bucket-appid>.cos.<region>.myqcloud.com); rows marked otherwise
            host_template="cos.{region}.myqcloud.com",
            bucket_rule=_TENCENT_BUCKET,
        ),
        VendorInfo(
            Vendor.KINGSOFT,
            "Kingsoft Cloud",
            _regions("""
                0 CN_Hangzhou cn cn-hangzhou ks3-cn-hangzhou.ksyuncs.com  # not confirmed
                1 CN_Shanghai cn cn-shanghai ks3-cn-shanghai.ksyuncs.com
                2 CN_Qingdao cn cn-qingdao ks3-cn-qingdao.ksyuncs.com  # not confirmed
                3 CN_Beijing cn cn-beijing ks3-cn-beijing.ksyuncs.com
                4 CN_Guangzhou cn cn-guangzhou ks3-cn-guangzhou.ksyuncs.com
                5 CN_Hongkong ap cn-hk-1 ks3-cn-hk-1.ksyuncs.com
                6 JR_Beijing cn jr-beijing ks3-jr-beijing.ksyuncs.com  # not confirmed
                7 JR_Shanghai cn jr-shanghai ks3-jr-shanghai.ksyuncs.com  # not confirmed
                8 NA_Russia_1 eu rus ks3-rus.ksyuncs.com  # not confirmed
                9 NA_Singapore_1 ap sgp ks3-sgp.ksyuncs.com  # not confirmed
            """),
            # pattern ks3-cn-<region>.ksyuncs.com seen in Kingsoft's SDK samples
            bucket_rule=dashed(reserved_prefixes=("kss",)),  # KS3: as DNS names, not starting with kss
        ),
        VendorInfo(
            Vendor.AZURE,
            "Microsoft Azure",
            (),
            bucket_rule=_AZURE_CONTAINER,
            host_template="{account}.blob.core.windows.net",
            access_key_rule=_AZURE_ACCOUNT,
            secret_key_rule=_AZURE_KEY,
        ),
        VendorInfo(
            Vendor.GOOGLE,
            "Google Cloud",
            (),
            bucket_rule=_GOOGLE_BUCKET,
            host_template="storage.googleapis.com",
            path_style=True,
        ),
        VendorInfo(
            Vendor.HUAWEI,
            "Huawei Cloud",
            _regions("""
                0 CN_North_1 cn cn-north-1
                1 CN_North_4 cn cn-north-4
                2 CN_East_2 cn cn-east-2
                3 CN_East_3 cn cn-east-3
                4 CN_South_1 cn cn-south-1
                5 CN_Southwest_2 cn cn-southwest-2
                6 AP_Southeast_1 ap ap-southeast-1
                7 AP_Southeast_2 ap ap-southeast-2
                8 AP_Southeast_3 ap ap-southeast-3
                9 AF_South_1 - af-south-1
                10 SA_Argentina_1 - sa-argentina-1  # not confirmed
                11 SA_Peru_1 - sa-peru-1  # not confirmed
                12 NA_Mexico_1 na na-mexico-1  # not confirmed
                13 SA_Brazil_1 - sa-brazil-1  # not confirmed
                14 LA_South_2 - la-south-2  # not confirmed
                15 SA_Chile_1 - sa-chile-1  # not confirmed
            """),
            # confirmed: Huawei's OBS endpoint list (af-south-1, cn-north-1/4, cn-east-2 ...)
            host_template="obs.{region}.myhuaweicloud.com",
            bucket_rule=_HUAWEI_BUCKET,
        ),
        VendorInfo(
            Vendor.BAIDU,
            "Baidu AI Cloud",
            _regions("""
                0 Beijing cn bj
                1 Baoding cn bd
                2 Suzhou cn su
                3 Guangzhou cn gz
                4 Hongkong ap hkg
                5 Singapore ap sin  # not confirmed
                6 Wuhan cn fwh
                7 Shanghai cn fsh  # not confirmed
            """),
            # bj/gz/su.bcebos.com confirmed; the s3. prefix is BOS's S3-compatible host
            host_template="s3.{region}.bcebos.com",
            bucket_rule=dashed(),  # BOS: a-z, 0-9 and '-' (length not confirmed)
        ),
    )
}


def vendor_info(vendor: int) -> VendorInfo:
    """The catalog entry of a vendor code; KeyError/ValueError if unknown."""
    return CATALOG[Vendor(vendor)]


def known_vendor(vendor: int) -> VendorInfo | None:
    """The catalog entry of a vendor code, or None for a code recbot does not know (Agora may hold one)."""
    try:
        return CATALOG[Vendor(vendor)]
    except ValueError:
        return None


def vendor_name(vendor: int) -> str:
    """A vendor as a person reads it: 'Amazon S3', or 'unknown vendor (9)'."""
    info = known_vendor(vendor)
    return info.name if info else f"unknown vendor ({vendor})"


def vendor_choices() -> str:
    """'0 Qiniu Cloud, 1 Amazon S3, ...' for error messages."""
    return ", ".join(f"{v.vendor.value} {v.name}" for v in CATALOG.values())


def region_label(vendor: int, region: int) -> str:
    """A storage region as a person reads it: 'US_EAST_1 (0)', 'n/a', or 'unknown (17)'."""
    info = known_vendor(vendor)
    if info is None:
        return f"unknown ({region})"
    if not info.has_regions:
        return "n/a (not used by this vendor)"
    found = info.region(region)
    return f"{found.name} ({region})" if found else f"unknown ({region})"


def geography_mismatch(api_region: str, vendor: int, region: int) -> bool:
    """True when the bucket's region is known to sit outside `api_region`."""
    info = known_vendor(vendor)
    found = info.region(region) if info is not None and info.has_regions else None
    return found is not None and found.geography != api_region
