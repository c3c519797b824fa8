"""VirtualService networking.istio.io/v1, as Istio 1.29 (what Kubeflow installs) defines it.

Follows networking/v1alpha3/virtual_service.proto of istio/api at 1.29.6 (networking/v1 is an
alias of the same messages), JSON names in lowerCamelCase as the CRD takes them. HTTP routes are
walked field by field; TLS and TCP routes, redirects, direct responses, fault injection, mirrors
and CORS are checked only for their outer shape.
"""

from __future__ import annotations

from tests.harness.schemas import (
    ANY,
    BOOL,
    INT,
    NUMBER,
    STR,
    STR_LIST,
    STR_MAP,
    ListOf,
    MapOf,
    Ref,
    obj,
)

# A duration such as "5s" (google.protobuf.Duration in its JSON form).
DURATION = STR
ANY_OBJECT = MapOf(ANY)

STRING_MATCH = obj("StringMatch", exact=STR, prefix=STR, regex=STR)
PORT_SELECTOR = obj("PortSelector", number=INT)
DESTINATION = obj("Destination", required=("host",), host=STR, subset=STR, port=PORT_SELECTOR)
HEADER_OPERATIONS = obj("HeaderOperations", set=STR_MAP, add=STR_MAP, remove=STR_LIST)
HEADERS = obj("Headers", request=HEADER_OPERATIONS, response=HEADER_OPERATIONS)

HTTP_MATCH_REQUEST = obj(
    "HTTPMatchRequest",
    name=STR,
    uri=STRING_MATCH,
    scheme=STRING_MATCH,
    method=STRING_MATCH,
    authority=STRING_MATCH,
    headers=MapOf(STRING_MATCH),
    port=INT,
    sourceLabels=STR_MAP,
    gateways=STR_LIST,
    queryParams=MapOf(STRING_MATCH),
    ignoreUriCase=BOOL,
    withoutHeaders=MapOf(STRING_MATCH),
    sourceNamespace=STR,
    statPrefix=STR,
)
HTTP_ROUTE_DESTINATION = obj(
    "HTTPRouteDestination",
    required=("destination",),
    destination=DESTINATION,
    weight=INT,
    headers=HEADERS,
)
HTTP_REWRITE = obj(
    "HTTPRewrite",
    uri=STR,
    authority=STR,
    uriRegexRewrite=obj("RegexRewrite", match=STR, rewrite=STR),
)
HTTP_RETRY = obj(
    "HTTPRetry",
    attempts=INT,
    perTryTimeout=DURATION,
    retryOn=STR,
    retryRemoteLocalities=BOOL,
    retryIgnorePreviousHosts=BOOL,
    backoff=DURATION,
)
HTTP_ROUTE = obj(
    "HTTPRoute",
    name=STR,
    match=ListOf(HTTP_MATCH_REQUEST),
    route=ListOf(HTTP_ROUTE_DESTINATION),
    redirect=ANY_OBJECT,
    directResponse=ANY_OBJECT,
    delegate=obj("Delegate", name=STR, namespace=STR),
    rewrite=HTTP_REWRITE,
    timeout=DURATION,
    retries=HTTP_RETRY,
    fault=ANY_OBJECT,
    mirror=DESTINATION,
    mirrors=ListOf(ANY_OBJECT),
    mirrorPercentage=obj("Percent", value=NUMBER),
    corsPolicy=ANY_OBJECT,
    headers=HEADERS,
)

VIRTUAL_SERVICE = obj(
    "VirtualService",
    required=("spec",),
    apiVersion=STR,
    kind=STR,
    metadata=Ref("V1ObjectMeta"),
    spec=obj(
        "VirtualServiceSpec",
        hosts=STR_LIST,
        gateways=STR_LIST,
        http=ListOf(HTTP_ROUTE),
        tls=ListOf(ANY_OBJECT),
        tcp=ListOf(ANY_OBJECT),
        exportTo=STR_LIST,
    ),
    status=ANY_OBJECT,
)
