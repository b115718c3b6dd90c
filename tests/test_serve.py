"""HTTP serving: the batch path's predictions, CSV's validation rules, bounded errors and bodies, batching.

One module-scoped store holds two tiny TF-IDF runs and their rank ensemble with post-processing.
"""

from __future__ import annotations

import asyncio
import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
import pytest
from fastapi.testclient import TestClient

from helpers.runs import test_slice as slice_of_test
from helpers.runs import tiny_run
from questlab import __version__
from questlab.data import DataError, load_test
from questlab.ensemble import EnsembleSpec
from questlab.ensemble_runs import build_ensemble
from questlab.errors import PredictionError
from questlab.predict import load_predictor, predict_file
from questlab.schema import ID, TARGETS
from questlab.serve import create_app
from questlab.serve.batching import MicroBatcher, serve_batch
from questlab.serve.limits import MAX_ERRORS, PredictRequest
from questlab.serve.validation import request_frame, validate_requests
from questlab.store import Store

TFIDF = {"max_features": 2000}


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> dict:
    root = tmp_path_factory.mktemp("serve")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    store = Store(uri)
    a = tiny_run(store, "tfidf", TFIDF, name="a")
    b = tiny_run(store, "tfidf", {**TFIDF, "alpha": 40.0}, name="b")
    spec = EnsembleSpec(weights="auto", per_target=True, average="rank", postprocess="auto", min_gain=-1.0)
    ens, _ = build_ensemble(store, [a, b], spec, n_boot=0)
    raw = pd.read_csv(slice_of_test(), dtype=str, keep_default_na=False)
    pairs = [{**row, ID: int(row[ID])} for row in raw.to_dict(orient="records")]
    return {"store": store, "uri": uri, "a": a, "ens": ens, "pairs": pairs, "predictor": load_predictor(store, a)}


@pytest.fixture(scope="module")
def client(world: dict) -> TestClient:
    with TestClient(create_app(world["predictor"])) as c:
        yield c


def _post(client: TestClient, pairs: list[dict]) -> httpx.Response:
    return client.post("/predict", json={"pairs": pairs})


def _matrix(response: httpx.Response) -> np.ndarray:
    assert response.status_code == 200, response.text
    return pd.DataFrame(response.json()["predictions"])[list(TARGETS)].to_numpy()


def _only_error(response: httpx.Response) -> dict:
    assert response.status_code == 422, response.text
    body = response.json()
    assert body["errors"] >= 1
    return body["detail"][0]


def _raw(client: TestClient, text: str) -> httpx.Response:
    """POST a body written by hand (JSON escapes such as a lone surrogate that json.dumps won't write)."""
    return client.post("/predict", content=text.encode(), headers={"content-type": "application/json"})


# --- the batch path's numbers -------------------------------------------------------------------
def test_serve_matches_batch_predict(world: dict, client: TestClient, tmp_path: Path) -> None:
    batch = predict_file(load_predictor(world["store"], world["a"]), slice_of_test(), tmp_path / "p.csv")
    health = client.get("/health").json()
    assert health["run_id"] == world["a"] and health["version"] == __version__
    # every pair of the slice, all 30 targets: exactly `questlab predict`'s numbers
    response = _post(client, world["pairs"])
    assert [p[ID] for p in response.json()["predictions"]] == list(batch[ID])
    assert len(batch) == len(world["pairs"]) == 50
    np.testing.assert_array_equal(_matrix(response), batch[list(TARGETS)].to_numpy())
    # one pair alone gets the same prediction as inside a batch (no batch-dependent scaling)
    np.testing.assert_array_equal(_matrix(_post(client, world["pairs"][2:3]))[0], _matrix(response)[2])
    # without qa_ids the pairs are numbered 0, 1, ...
    no_ids = [{k: v for k, v in p.items() if k != ID} for p in world["pairs"][:3]]
    assert [p[ID] for p in _post(client, no_ids).json()["predictions"]] == [0, 1, 2]


def test_the_unbatched_server_gives_the_same_numbers(world: dict, client: TestClient) -> None:
    with TestClient(create_app(world["predictor"], batch_window_ms=None)) as plain:
        np.testing.assert_array_equal(
            _matrix(_post(plain, world["pairs"][:4])), _matrix(_post(client, world["pairs"][:4]))
        )
        assert _only_error(_post(plain, [{**world["pairs"][0], "question_body": ""}]))["field"] == "question_body"


# --- one validator for HTTP and CSV -------------------------------------------------------------
@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"question_body": ""}, "question_body"),
        ({"question_title": "   "}, "question_title"),
        ({"answer": ""}, "answer"),
        ({"host": "\t"}, "host"),
        ({"category": ""}, "category"),
        ("duplicate", ID),
    ],
)
def test_http_refuses_what_a_csv_refuses(world: dict, client: TestClient, tmp_path: Path, change, field: str) -> None:
    pairs = [dict(p) for p in world["pairs"][:3]]
    pairs[1] = {**pairs[1], ID: pairs[0][ID]} if change == "duplicate" else {**pairs[1], **change}
    csv = tmp_path / "t.csv"
    pd.DataFrame(pairs).to_csv(csv, index=False)
    with pytest.raises(DataError) as caught:
        load_test(csv)
    item = _only_error(_post(client, pairs))
    assert (item["field"], item["pair"]) == (caught.value.column, caught.value.row - 1) == (field, 1)
    assert caught.value.message.split(" (")[0] in item["msg"]


@pytest.mark.parametrize(
    ("field", "value"),
    [
        (ID, False),  # a bool is no id
        (ID, "5"),  # strings are not coerced
        (ID, 1.5),  # 1.0 is read as 1 (test_qa_id_as_json_schema_integer)
        (ID, 10**30),  # outside int64
        ("answer", 5),
        ("answer", None),  # required
        ("question_user_name", 7),
        ("score", 3),  # unknown field
    ],
)
def test_http_checks_types_strictly(world: dict, client: TestClient, field: str, value: object) -> None:
    pairs = [dict(p) for p in world["pairs"][:3]]
    pairs[2][field] = value
    item = _only_error(_post(client, pairs))
    assert (item["field"], item["pair"]) == (field, 2)


def test_http_accepts_what_a_csv_accepts(world: dict, client: TestClient) -> None:
    pair = world["pairs"][0]
    assert _post(client, [{**pair, "question_body": "  "}]).status_code == 200  # as train.csv's image-only posts
    assert _post(client, [{**pair, ID: 2**63 - 1}]).json()["predictions"][0][ID] == 2**63 - 1
    optional = ("question_user_page", "answer_user_page", "url")
    assert _post(client, [{k: v for k, v in pair.items() if k not in optional}]).status_code == 200
    assert _post(client, [{**pair, **dict.fromkeys(optional)}]).status_code == 200  # null: left out


def test_qa_ids_are_given_for_every_pair_or_none(world: dict, client: TestClient) -> None:
    pairs = [dict(p) for p in world["pairs"][:3]]
    del pairs[1][ID]
    item = _only_error(_post(client, pairs))
    assert (item["field"], item["pair"]) == (ID, 1)


def test_a_lone_surrogate_is_a_422_naming_field_and_pair(world: dict, client: TestClient) -> None:
    pairs = json.dumps({"pairs": world["pairs"][:2]})
    second = pairs.index('"answer": "', pairs.index(str(world["pairs"][1][ID])))
    text = pairs[:second] + '"answer": "\\ud800' + pairs[second + len('"answer": "') :]
    item = _only_error(_raw(client, text))
    assert (item["field"], item["pair"]) == ("answer", 1)
    assert "surrogate" in item["msg"]
    # in a key (an unknown field) or a user name: still a 422, never a 500
    assert _raw(client, text.replace('"answer": "\\ud800', '"\\udc00x": "1", "answer": "', 1)).status_code == 422
    named = _raw(client, pairs.replace('"answer_user_name": "', '"answer_user_name": "\\udfff', 1))
    assert _only_error(named)["field"] == "answer_user_name"


def test_errors_do_not_echo_the_input(world: dict, client: TestClient) -> None:
    secret = "NOT-TO-BE-ECHOED " * 500
    pairs = [{**p, "answer": secret, ID: str(p[ID])} for p in world["pairs"][:30]]  # 30 string ids: 30 errors
    pairs[3]["x" * 5000] = secret  # an unknown field: its name and value are input too
    response = _post(client, pairs)
    body = response.json()
    assert response.status_code == 422 and "NOT-TO-BE-ECHOED" not in response.text
    assert body["errors"] == 31 and len(body["detail"]) == MAX_ERRORS
    assert len(response.content) < 10_000
    assert set(body["detail"][0]) == {"loc", "field", "pair", "msg", "type"}
    broken = _only_error(_raw(client, '{"pairs": [{"answer": "' + secret))
    assert broken["type"] == "json_invalid" and "NOT-TO-BE-ECHOED" not in broken["msg"]


# --- request size -------------------------------------------------------------------------------
class Counting:
    """A predictor that counts its calls (to prove a refused body never reached the models)."""

    run_id = "counting"

    def __init__(self) -> None:
        self.calls = 0
        self.notes: list[str] = []

    def predict(self, frame: pd.DataFrame) -> np.ndarray:
        self.calls += 1
        return np.full((len(frame), len(TARGETS)), 0.5)


def test_a_body_over_the_limit_is_a_413_before_parsing(world: dict) -> None:
    predictor = Counting()
    small = {"pairs": world["pairs"][:1]}
    limit = len(json.dumps(small)) + 100
    with TestClient(create_app(predictor, max_body_bytes=limit)) as c:
        assert c.post("/predict", json=small).status_code == 200 and predictor.calls == 1
        declared = c.post("/predict", json={"pairs": world["pairs"][:3]})
        assert declared.status_code == 413
        assert "\n" not in declared.json()["detail"] and str(limit) in declared.json()["detail"]

        def chunks():  # no Content-Length: the bytes received are counted
            for _ in range(limit // 50 + 2):
                yield b" " * 50

        streamed = c.post("/predict", content=chunks(), headers={"content-type": "application/json"})
        assert streamed.request.headers.get("content-length") is None
        assert streamed.status_code == 413 and predictor.calls == 1


def test_the_pair_count_is_bounded() -> None:
    pair = {"question_title": "t", "question_body": "b", "answer": "a", "category": "c", "host": "h"}
    with TestClient(create_app(Counting())) as c:
        item = _only_error(c.post("/predict", json={"pairs": [pair] * 10_001}))
        assert item["field"] == "pairs" and item["pair"] is None
        assert _only_error(c.post("/predict", json={"pairs": []}))["field"] == "pairs"


# --- user names ---------------------------------------------------------------------------------
def test_missing_user_names_are_unknown_not_equal(world: dict, client: TestClient) -> None:
    """An omitted, null or blank user name matches no other name: "the asker answered" is off.

    So a pair without names is predicted exactly as the same pair by two different people; the
    same pair by one person (both names equal) is predicted differently (the model uses it).
    """
    names = ("question_user_name", "answer_user_name")
    base = {k: v for k, v in world["pairs"][0].items() if k not in names}
    variants = {
        "omitted": base,
        "null": {**base, **dict.fromkeys(names)},
        "blank": {**base, "question_user_name": "", "answer_user_name": " "},
        "one given": {**base, "answer_user_name": "alice"},
        "different": {**base, "question_user_name": "alice", "answer_user_name": "bob"},
        "same": {**base, "question_user_name": "alice", "answer_user_name": "alice"},
    }
    got = {k: _matrix(_post(client, [v]))[0] for k, v in variants.items()}
    for kind in ("omitted", "null", "blank", "one given"):
        np.testing.assert_array_equal(got[kind], got["different"], err_msg=kind)
    assert not np.array_equal(got["same"], got["different"])
    item = _only_error(_post(client, [{**base, "answer_user_name": "\x00unknown-question-user"}]))
    assert item["field"] == "answer_user_name"


# --- batching -----------------------------------------------------------------------------------
def _requests(world: dict) -> list[list]:
    """Pair lists of several sizes; two without qa_ids (their 0, 1, ... collide across requests)."""
    pairs = world["pairs"]
    no_ids = [{k: v for k, v in p.items() if k != ID} for p in pairs]
    lists = [pairs[0:1], pairs[1:4], no_ids[4:6], pairs[6:7], no_ids[7:10], pairs[0:2], pairs[10:15]]
    return [PredictRequest.model_validate({"pairs": x}).pairs for x in lists]


def test_a_batch_is_validated_as_each_request_alone(world: dict) -> None:
    pairs = world["pairs"]
    good = _requests(world)
    raw = [
        [{**pairs[30], "host": ""}],  # first in the batch; its column is checked after the title
        [pairs[31], {**pairs[32], "question_title": " "}],
        [pairs[33], {**pairs[34], ID: pairs[33][ID]}],  # a repeated id
        [pairs[35], {k: v for k, v in pairs[36].items() if k != ID}],  # an id given for some pairs only
        [{**pairs[37], "answer": "", "category": ""}],
    ]
    bad = [PredictRequest.model_validate({"pairs": x}).pairs for x in raw]
    mixed = [bad[0], good[0], bad[1], good[1], good[2], bad[2], bad[3], good[3], bad[4], *good[4:]]
    alone = []
    for pairs_ in mixed:
        try:
            alone.append(request_frame(pairs_))
        except DataError as exc:
            alone.append(exc)
    together = validate_requests(mixed)
    assert [type(x) for x in together] == [type(x) for x in alone]
    assert sum(isinstance(x, DataError) for x in together) == len(bad)
    for got, want in zip(together, alone, strict=True):
        if isinstance(want, DataError):
            assert (got.column, got.row, got.message) == (want.column, want.row, want.message)
        else:
            pd.testing.assert_frame_equal(got, want)


@pytest.mark.parametrize("which", ["a", "ens"])
def test_concurrent_requests_share_a_pass_and_get_their_own_numbers(world: dict, which: str) -> None:
    predictor = load_predictor(world["store"], world[which])
    requests = _requests(world)
    bad = PredictRequest.model_validate({"pairs": [{**world["pairs"][20], "answer": ""}]}).pairs
    batcher = MicroBatcher(lambda items: serve_batch(predictor, items), window_s=0.01)

    async def all_at_once() -> list:
        return await asyncio.gather(*(batcher.submit(r, len(r)) for r in [*requests, bad]), return_exceptions=True)

    *results, refused = asyncio.run(all_at_once())
    assert batcher.batches == 1  # submitted before the batcher ran: one shared pass
    assert isinstance(refused, DataError) and refused.column == "answer"
    for pairs, got in zip(requests, results, strict=True):
        np.testing.assert_array_equal(got, predictor.predict(request_frame(pairs)))


def test_a_request_the_models_refuse_does_not_fail_the_others(world: dict) -> None:
    class Picky(Counting):
        def predict(self, frame: pd.DataFrame) -> np.ndarray:
            if (frame["host"] == "refused.example").any():
                raise ValueError("this model cannot rate refused.example")
            return super().predict(frame)

    requests = _requests(world)[:3]
    refused = PredictRequest.model_validate({"pairs": [{**world["pairs"][0], "host": "refused.example"}]}).pairs
    results = serve_batch(Picky(), [requests[0], refused, *requests[1:]])
    assert isinstance(results[1], ValueError)
    assert [r.shape for r in results if not isinstance(r, Exception)] == [(1, 30), (3, 30), (2, 30)]
    with TestClient(create_app(Picky())) as c:
        assert "refused.example" in _only_error(_post(c, [{**world["pairs"][0], "host": "refused.example"}]))["msg"]


def test_concurrent_http_requests_get_the_batch_paths_numbers(world: dict, client: TestClient) -> None:
    expected = world["predictor"].predict(load_test(slice_of_test()))
    with ThreadPoolExecutor(8) as pool:
        got = list(pool.map(lambda i: _matrix(_post(client, world["pairs"][i : i + 1]))[0], range(24)))
    np.testing.assert_array_equal(np.array(got), expected[:24])


def test_an_ensemble_is_served_in_process(world: dict) -> None:
    predictor = load_predictor(world["store"], world["ens"])
    with TestClient(create_app(predictor)) as c:
        assert c.get("/health").json()["run_id"] == world["ens"]
        response = _post(c, world["pairs"][:6])
        np.testing.assert_array_equal(_matrix(response), predictor.predict(load_test(slice_of_test()).head(6)))
        one = _matrix(_post(c, world["pairs"][3:4]))
        np.testing.assert_array_equal(one, predictor.predict(load_test(slice_of_test()).iloc[3:4]))


# --- docs, version ------------------------------------------------------------------------------
def test_docs_are_served_without_a_cdn(client: TestClient) -> None:
    page = client.get("/docs")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "http://" not in page.text and "https://" not in page.text
    for text in ("/predict", "/health", "question_title", "qa_id", "answer_well_written", __version__):
        assert text in page.text
    spec = client.get("/openapi.json").json()
    assert spec["info"]["version"] == __version__
    assert "PredictResponse" in spec["components"]["schemas"]
    assert client.get("/redoc").status_code == 404


def test_openapi_states_the_visible_text_rule_the_server_enforces() -> None:
    """The schema's pattern for required texts is the validator's rule (``str.strip()`` leaves text)."""
    import re

    from questlab.serve.limits import Pair

    props = Pair.model_json_schema()["properties"]
    for field in ("question_title", "answer", "category", "host"):
        pattern = re.compile(props[field]["pattern"])
        for code in range(0x3100):  # every whitespace character Python knows lies below U+3100
            assert (pattern.search(chr(code)) is not None) == bool(chr(code).strip()), (field, hex(code))
    assert props["question_body"]["minLength"] == 1 and "pattern" not in props["question_body"]


def test_a_body_that_is_not_json_is_the_documented_400(client: TestClient) -> None:
    """Bytes that do not decode are FastAPI's 400 (not a 422 of ours): the schema lists it, so a
    client (or a fuzzer) reading /openapi.json knows every status /predict answers with."""
    response = client.post("/predict", content=b"EF\x12\xff\x00T", headers={"content-type": "application/json"})
    assert response.status_code == 400 and set(response.json()) == {"detail"}
    documented = client.get("/openapi.json").json()["paths"]["/predict"]["post"]["responses"]
    assert {"200", "400", "413", "422"} <= set(documented)


def test_openapi_states_the_all_or_none_qa_id_rule_the_server_enforces(client: TestClient, world: dict) -> None:
    """The served schema and the server agree, request by request: ids for every pair, for none
    (absent or null), or mixed (refused by both)."""
    from jsonschema import Draft202012Validator
    from referencing import Registry
    from referencing.jsonschema import DRAFT202012

    spec = client.get("/openapi.json").json()
    registry = Registry().with_resource("urn:spec", DRAFT202012.create_resource(spec))
    schema = {"$ref": "urn:spec#/components/schemas/PredictRequest"}
    validator = Draft202012Validator(schema, registry=registry)
    pairs = world["pairs"][:3]
    bare = [{k: v for k, v in p.items() if k != ID} for p in pairs]
    cases = {
        "all given": (pairs, True),
        "none given": (bare, True),
        "all null": ([{**p, ID: None} for p in bare], True),
        "one missing": ([*pairs[:2], bare[2]], False),
        "one null": ([*pairs[:2], {**bare[2], ID: None}], False),
    }
    for name, (body, ok) in cases.items():
        assert validator.is_valid({"pairs": body}) is ok, name
        response = _post(client, body)
        assert (response.status_code == 200) is ok, (name, response.text)
        if not ok:
            assert "give it for every pair or for none" in _only_error(response)["msg"]


@pytest.mark.parametrize(
    ("qa_id", "accepted"), [(5.0, True), (-6770.0, True), (3.5, False), (False, False), ("5", False), (1e30, False)]
)
def test_qa_id_as_json_schema_integer(qa_id: object, accepted: bool) -> None:
    """5.0 is a JSON Schema integer and a CSV reads it as 5; a fraction, a bool or a string is refused."""
    from pydantic import ValidationError

    from questlab.serve.limits import Pair

    pair = {"qa_id": qa_id, "question_title": "t", "question_body": "b", "answer": "a", "category": "C", "host": "h"}
    if accepted:
        assert Pair.model_validate(pair).qa_id == int(qa_id) and type(Pair.model_validate(pair).qa_id) is int
    else:
        with pytest.raises(ValidationError, match="qa_id"):
            Pair.model_validate(pair)


def test_a_model_predicting_nan_is_a_500_naming_the_fold_model_not_the_clients_fault(world: dict) -> None:
    # A stored model gone wrong: its NaN used to pass np.clip into the answer, which Starlette then
    # refused to render (a bare "Internal Server Error"); `questlab predict` wrote it to the CSV.
    predictor = load_predictor(world["store"], world["a"])  # its own: the module's shared one stays whole
    broken = predictor.models[1]
    real = broken.predict
    broken.predict = lambda frame: np.where(np.arange(len(TARGETS)) == 4, np.nan, real(frame))
    try:
        frame = request_frame(PredictRequest.model_validate({"pairs": world["pairs"][:2]}).pairs)
        with pytest.raises(PredictionError, match=r"fold model 1 of run .*non-finite prediction \(row 0, target 4\)"):
            predictor.predict(frame)
        for window in (None, 5.0):  # unbatched and batched paths
            with TestClient(create_app(predictor, batch_window_ms=window), raise_server_exceptions=False) as c:
                answer = c.post("/predict", json={"pairs": world["pairs"][:2]})
                assert answer.status_code == 500
                assert "fold model 1" in answer.json()["detail"] and "non-finite" in answer.json()["detail"]
    finally:
        broken.predict = real
