"""Text features: TF-IDF inside the exported graph, the same answers in scikit-learn and
onnxruntime (in any script), and every way in (files, /predict, v2, batch) taking text."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import onnx
import polars as pl
import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from mlops_template._fs import current_version
from mlops_template.batch import predict_file
from mlops_template.card import MODEL_FILE, input_names
from mlops_template.cli import app
from mlops_template.data import load_prepared, prepare_dataset, to_model_inputs
from mlops_template.errors import ConfigError, DataSchemaError, InputValidationError
from mlops_template.inference import OnnxModel
from mlops_template.schema import DatasetSchema, load_schema
from mlops_template.serving import create_app
from mlops_template.settings import Settings
from mlops_template.train import ONNX_LOCALE, ONNX_TERM_PATTERN, export_onnx, fit

from .conftest import QUESTIONS, QUESTIONS_SCHEMA

# Words outside ASCII, where RE2's `\w` and `\b` (ASCII only) would cut differently from
# Python's, and where lower-casing needs a real Unicode locale.
UNICODE = [
    "Qu'est-ce qu'un café crème? ÉCOLE Straße naïve",
    "ΑΘΗΝΑ και Σπάρτη: ποιο είναι παλαιότερο;",
    "数据科学 東京 Ünïcödé x_y 12 a1",
    "Who wrote Ödön von Horváth's plays?",
]


@pytest.fixture(scope="module")
def text_api(text_models: Path) -> Iterator[TestClient]:
    app = create_app(Settings(model_dir=text_models / "models", max_batch_rows=64))
    with TestClient(app) as client:
        yield client


def test_the_graph_scores_text_as_scikit_learn_does_in_any_script(
    text_schema: DatasetSchema, text_models: Path
) -> None:
    train, test, _ = load_prepared(text_models / "processed", text_schema)
    # Unicode words in training too, so that they are in the vocabulary and weigh in.
    extra = pl.DataFrame(
        {
            "topic": ["literature", "trivia", "coding", "literature"],
            "question": UNICODE,
            "answer": ["Straße café", None, "東京", "Ödön"],
            "replies": [1, 1, 2, 1],
        },
        schema=train.schema,
    )
    train = pl.concat([train, extra])
    test = pl.concat([test, extra])
    pipeline = fit(text_schema, train)
    model = onnx.load_from_string(export_onnx(pipeline, text_schema))

    import onnxruntime as ort

    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    names = input_names(text_schema.features)
    feed = to_model_inputs(test, text_schema.features, names)
    labels, probabilities = session.run(None, feed)
    frame = pl.DataFrame({name: array.reshape(-1) for name, array in feed.items()})
    expected = pipeline.predict_proba(frame)
    assert labels.tolist() == pipeline.predict(frame).tolist()
    np.testing.assert_allclose(probabilities, expected, atol=1e-5)
    # The non-ASCII rows carry words the model knows, so the parity above covers how they are
    # cut and lower-cased (an empty bag of words would agree whatever the tokenizer did).
    words = pipeline.named_steps["preprocess"].named_transformers_["text0"]
    assert all(count > 0 for count in words.transform(UNICODE).getnnz(axis=1))
    assert {"straße", "café", "αθηνα", "東京"} <= set(words.vocabulary_)

    tokenizers = [n for n in model.graph.node if n.op_type == "Tokenizer"]
    normalizers = [n for n in model.graph.node if n.op_type == "StringNormalizer"]
    assert len(tokenizers) == len(normalizers) == 2  # one per text feature
    for node in tokenizers:
        attributes = {a.name: a for a in node.attribute}
        assert attributes["tokenexp"].s.decode() == ONNX_TERM_PATTERN
    for node in normalizers:
        attributes = {a.name: a for a in node.attribute}
        assert attributes["locale"].s.decode() == ONNX_LOCALE


def test_the_text_model_learns_and_its_card_describes_the_text(text_models: Path) -> None:
    model = OnnxModel.load(text_models / "models")
    assert model.card.metrics["f1_macro"] > 0.8
    assert [f.type for f in model.card.features] == ["text", "text", "integer"]
    assert isinstance(model.card.example["question"], str)
    prediction = model.predict(
        {
            "question": ["Who wrote the novel Moby Dick?", "How do I write a loop in Python?"],
            "answer": [None, ""],
            "replies": [1, 1],
        }
    )
    assert prediction.labels is not None
    assert prediction.labels.tolist() == ["literature", "coding"]


def test_predict_takes_text_and_names_what_is_not_text(
    text_api: TestClient, text_models: Path
) -> None:
    record = {"question": "What is AI?", "answer": None, "replies": 1}
    machines = "Artificial intelligence: machines that think"
    records = [
        {**record, "answer": machines},
        {**record, "answer": "ünï"},
        {**record, "answer": ""},
    ]
    good = text_api.post("/predict", json={"records": records})
    assert good.status_code == 200, good.text
    expected = OnnxModel.load(text_models / "models").predict(
        {name: [r[name] for r in records] for name in record}
    )
    assert expected.labels is not None
    assert [p["label"] for p in good.json()["predictions"]] == expected.labels.tolist()
    assert good.json()["predictions"][0]["label"] == "AI"
    bad = text_api.post(
        "/predict",
        json={"records": [record, {**record, "question": 42}, {**record, "question": None}]},
    )
    assert bad.status_code == 422
    text = bad.text
    assert "question" in text, text
    assert "expected text" in text, text
    assert "missing value" in text, text
    # One record takes its own fast path: the same rules.
    one = text_api.post("/predict", json={"records": [records[0]]})
    assert one.json()["predictions"][0]["label"] == "AI"
    for value in (7, None, ["a"], {"a": 1}):
        refused = text_api.post("/predict", json={"records": [{**record, "question": value}]})
        assert refused.status_code == 422, refused.text
        assert "question" in refused.text


def test_v2_takes_text_as_bytes(text_api: TestClient, text_models: Path) -> None:
    card = OnnxModel.load(text_models / "models").card
    meta = text_api.get(f"/v2/models/{card.name}").json()
    assert [(i["name"], i["datatype"]) for i in meta["inputs"]] == [
        ("question", "BYTES"),
        ("answer", "BYTES"),
        ("replies", "FP32"),
    ]
    body = {
        "inputs": [
            {
                "name": "question",
                "shape": [2],
                "datatype": "BYTES",
                "data": ["Who painted the Mona Lisa?", "What is AI?"],
            },
            {
                "name": "answer",
                "shape": [2],
                "datatype": "BYTES",
                "data": ["", "Artificial intelligence: machines that think"],
            },
            {"name": "replies", "shape": [2], "datatype": "INT64", "data": [1, 1]},
        ]
    }
    answer = text_api.post(f"/v2/models/{card.name}/infer", json=body)
    assert answer.status_code == 200, answer.text
    labels = next(o for o in answer.json()["outputs"] if o["name"] == "label")["data"]
    assert labels[1] == "AI"
    body["inputs"][0]["datatype"] = "FP32"
    wrong = text_api.post(f"/v2/models/{card.name}/infer", json=body)
    assert wrong.status_code == 422
    assert "inputs[0].datatype: expected BYTES, got FP32" in wrong.json()["error"], wrong.text


def test_batch_predict_scores_a_file_of_text(text_models: Path, tmp_path: Path) -> None:
    model = OnnxModel.load(text_models / "models")
    rows = predict_file(model, QUESTIONS, tmp_path / "scored.parquet", chunk_size=100)
    scored = pl.read_parquet(tmp_path / "scored.parquet")
    assert rows == scored.height == pl.read_csv(QUESTIONS).height
    assert scored.schema["question"] == pl.String
    assert scored.schema["replies"] == pl.Int64  # passing columns keep their type
    assert (scored["predicted_topic"] == scored["topic"]).mean() > 0.9
    # A missing question (not nullable) is named by column and line, nothing written.
    broken = tmp_path / "broken.csv"
    lines = QUESTIONS.read_text(encoding="utf-8").splitlines()
    lines[3] = "AI,,," + lines[3].rsplit(",", 1)[1]
    broken.write_text("\n".join(lines) + "\n", encoding="utf-8")
    with pytest.raises(DataSchemaError, match=r"column 'question': missing value.*line 4"):
        predict_file(model, broken, tmp_path / "broken.parquet")
    assert not (tmp_path / "broken.parquet").exists()


def test_a_missing_text_in_a_file_is_named_by_line(tmp_path: Path) -> None:
    shutil.copy(QUESTIONS_SCHEMA, tmp_path / "dataset.toml")
    lines = QUESTIONS.read_text(encoding="utf-8").splitlines()
    lines[10] = "trivia,,some answer,1"
    (tmp_path / "questions.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    schema = load_schema(tmp_path / "dataset.toml")
    with pytest.raises(DataSchemaError, match=r"column 'question': missing value.*line 11"):
        prepare_dataset(schema, tmp_path / "processed")


CATEGORIES = 'categories = ["AI", "coding", "emotion", "literature", "psychology", "trivia"]'


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        (f'type = "category"\n{CATEGORIES}', 'type = "text"', "the target cannot be text"),
        (
            'type = "linear"\nC = 10.0',
            'type = "random_forest"',
            'text features (question, answer) need model.type = "linear"',
        ),
        (
            '[features.question]\ntype = "text"',
            '[features.question]\ntype = "text"\nmin = 1',
            "features.question: `min`/`max` apply to numeric columns, not text",
        ),
        (
            '[features.replies]\ntype = "integer"',
            '[features.replies]\ntype = "integer"\nmax_terms = 5',
            "features.replies: `max_terms` applies to text columns, not integer",
        ),
    ],
)
def test_schema_mistakes_with_text_are_refused_clearly(
    tmp_path: Path, old: str, new: str, message: str
) -> None:
    text = QUESTIONS_SCHEMA.read_text()
    assert old in text
    (tmp_path / "dataset.toml").write_text(text.replace(old, new))
    with pytest.raises(ConfigError) as caught:
        load_schema(tmp_path / "dataset.toml")
    assert message in str(caught.value)


def test_the_served_model_file_is_the_one_trained(text_models: Path) -> None:
    folder = current_version(text_models / "models")
    model = onnx.load(str(folder / MODEL_FILE))
    assert [i.name for i in model.graph.input] == ["question", "answer", "replies"]


def test_input_errors_name_the_text_column(text_models: Path) -> None:
    model = OnnxModel.load(text_models / "models")
    with pytest.raises(InputValidationError) as caught:
        model.predict({"question": ["fine", ["a", "list"]], "answer": ["", ""], "replies": [1, 1]})
    assert [i.column for i in caught.value.issues] == ["question"]
    assert "expected text (a string)" in caught.value.issues[0].message


@pytest.fixture(scope="module")
def asked(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The example as a chatbot meets it: the question alone, split so that no question is in
    both the training and the test rows; prepared and trained once."""
    from mlops_template.train import train_model

    root = tmp_path_factory.mktemp("asked")
    text = QUESTIONS_SCHEMA.read_text()
    body = text[text.index("[features.question]") : text.index("[features.answer]")]
    schema = (
        text[: text.index("[features.question]")].replace(
            "seed = 42", 'seed = 42\ngroup = "question"'
        )
        + body
        + '[model]\ntype = "linear"\nC = 10.0\nclass_weight = "balanced"\n'
    ).replace('null_values = [""]', 'null_values = [""]\nignore = ["answer", "replies"]')
    shutil.copy(QUESTIONS, root / "questions.csv")
    (root / "dataset.toml").write_text(schema)
    prepare_dataset(load_schema(root / "dataset.toml"), root / "processed")
    train_model(load_schema(root / "dataset.toml"), root / "processed", root / "models")
    return root


def test_a_grouped_split_scores_the_question_alone_on_questions_never_seen(asked: Path) -> None:
    train, test, manifest = load_prepared(asked / "processed")
    assert set(train.columns) == set(test.columns) == {"topic", "question"}
    seen = set(train.get_column("question").to_list())
    assert seen.isdisjoint(test.get_column("question").to_list())
    assert manifest.rows_train + manifest.rows_test == 618  # every row, none lost to the split
    card = OnnxModel.load(asked / "models").card
    assert card.dataset.group == "question"
    assert [f.name for f in card.features] == ["question"]
    assert card.metrics["f1_macro"] > 0.6  # on questions the model never saw
    shown = CliRunner().invoke(app, ["info", "--model-dir", str(asked / "models")])
    assert shown.exit_code == 0, shown.output
    assert "no question in both" in shown.output


def test_a_text_with_no_known_term_is_said_in_the_answer_and_counted(asked: Path) -> None:
    model = OnnxModel.load(asked / "models")
    assert "sad" in model.card.vocabulary["question"]
    assert "xylophonist" not in model.card.vocabulary["question"]
    records = [
        {"question": "Who wrote the novel Moby Dick?"},
        {"question": "xylophonist qwertyuiop!"},
        {"question": ""},
        {"question": "Xylophonist SAD"},  # one known term, whatever its case
    ]
    with TestClient(create_app(Settings(model_dir=asked / "models"))) as client:
        answer = client.post("/predict", json={"records": records})
        assert answer.status_code == 200, answer.text
        assert answer.json()["no_known_terms"] == {"question": [1, 2]}
        labels = [p["label"] for p in answer.json()["predictions"]]
        assert labels[1] == labels[2]  # nothing to go on: the same answer for both
        metrics = client.get("/metrics").text
        assert 'model_texts_without_known_terms_total{feature="question"} 2.0' in metrics
        docs = client.get("/openapi.json").json()["components"]["schemas"]
        assert "no_known_terms" in docs["PredictResponse"]["properties"]
