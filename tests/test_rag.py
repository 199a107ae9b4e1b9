"""genaibook.rag (Appendix C): bad input with clear errors (missing PDF, not a PDF, empty document, bad top_k, a query
longer than the embedder reads), the retrieval metrics on hand-made cases, quantization, and faiss against brute force."""

import warnings

import numpy as np
import pytest
import torch

from genaibook.rag import (
    FaissStore,
    build_rag_prompt,
    bytes_per_vector,
    check_query,
    chunk_documents,
    chunk_text,
    contains_fact,
    embed,
    evaluate_retrieval,
    generate_answer,
    gpl3_pdf,
    load_pdf,
    load_qa,
    passage_hit,
    quantize,
    quantized_top_k,
    random_unit_vectors,
    rag_asset,
    relevant_chunks,
    retrieval_metrics,
    search_documents,
    text_to_pdf,
    top_k_cosine,
)


# ---- documents --------------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def gpl_pdf(tmp_path_factory):
    return gpl3_pdf(tmp_path_factory.mktemp("rag"))


@pytest.fixture(scope="module")
def gpl_chunks(gpl_pdf):
    return chunk_documents(load_pdf(gpl_pdf))


def test_gpl_pdf_round_trip(gpl_pdf):
    pages = load_pdf(gpl_pdf)
    assert len(pages) == 11
    text = " ".join(p.page_content for p in pages)
    assert "TERMS AND CONDITIONS" in text and "END OF TERMS AND CONDITIONS" in text
    assert gpl3_pdf(gpl_pdf.parent) == gpl_pdf  # built once, then reused


def test_missing_pdf(tmp_path):
    with pytest.raises(FileNotFoundError, match="no PDF at .*missing.pdf: check the path"):
        load_pdf(tmp_path / "missing.pdf")


def test_not_a_pdf(tmp_path):
    fake = tmp_path / "report.pdf"
    fake.write_text("This is plain text with a .pdf name.")
    with pytest.raises(ValueError, match="report.pdf is not a PDF: a PDF starts with b'%PDF-'"):
        load_pdf(fake)
    with pytest.raises(ValueError, match="is not a PDF"):
        load_pdf(rag_asset("GPL-3.txt"))


def test_pdf_without_text(tmp_path):
    from fpdf import FPDF

    pdf = FPDF()
    pdf.add_page()
    pdf.output(str(tmp_path / "blank.pdf"))
    with pytest.raises(ValueError, match="1 page\\(s\\) but no text layer"):
        load_pdf(tmp_path / "blank.pdf")


def test_empty_text_and_bad_sizes():
    for empty in ("", "   \n\n ", None):
        with pytest.raises(ValueError, match="empty text"):
            chunk_text(empty)
    with pytest.raises(ValueError, match="empty text"):
        text_to_pdf(" \n", "never.pdf")
    with pytest.raises(ValueError, match="chunk_overlap \\(500\\) must be smaller than chunk_size \\(500\\)"):
        chunk_text("some text", chunk_size=500, chunk_overlap=500)
    with pytest.raises(ValueError, match="chunk_size"):
        chunk_text("some text", chunk_size=0)
    with pytest.raises(ValueError, match="chunk_overlap"):
        chunk_text("some text", chunk_size=10, chunk_overlap=-1)
    with pytest.raises(ValueError, match="no text to chunk"):
        chunk_documents([])


def test_chunk_sizes_and_overlap(gpl_chunks):
    text = rag_asset("GPL-3.txt").read_text()
    for size, overlap in ((250, 0), (500, 100), (1000, 200)):
        chunks = chunk_text(text, size, overlap)
        assert max(len(c) for c in chunks) <= size
    assert 80 <= len(gpl_chunks) <= 100 and max(len(c) for c in gpl_chunks) <= 500


# ---- the real embedder ------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def minilm():
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer("sentence-transformers/all-MiniLM-L6-v2", device="cpu")


@pytest.fixture(scope="module")
def gpl_embeddings(minilm, gpl_chunks):
    return embed(minilm, gpl_chunks)


def test_embeddings_are_unit_length(gpl_embeddings):
    assert gpl_embeddings.shape[1] == 384 and gpl_embeddings.dtype == torch.float32
    torch.testing.assert_close(gpl_embeddings.norm(dim=1), torch.ones(len(gpl_embeddings)))


def test_top_k_must_be_positive(minilm, gpl_embeddings, gpl_chunks):
    for bad in (0, -1, 2.5, "3"):
        with pytest.raises((ValueError, TypeError), match="top_k"):
            search_documents("Is there a warranty?", minilm, gpl_embeddings, gpl_chunks, top_k=bad)
    with pytest.raises(ValueError, match="top_k"):
        FaissStore(384).add(gpl_embeddings).search(gpl_embeddings[:1], top_k=0)
    assert len(search_documents("Is there a warranty?", minilm, gpl_embeddings, gpl_chunks, top_k=10_000)) == len(
        gpl_chunks
    )


def test_mismatched_chunks_and_embeddings(minilm, gpl_embeddings, gpl_chunks):
    with pytest.raises(ValueError, match="chunks but .* embeddings"):
        search_documents("Is there a warranty?", minilm, gpl_embeddings, gpl_chunks[:-1])


def test_long_query_is_truncated_with_a_warning(minilm, gpl_embeddings, gpl_chunks):
    "MiniLM reads at most 256 word pieces: a longer query warns (default) or raises, and the tail really is ignored."
    head = "Is there any warranty for the Program? "
    long_query = head + "blah " * 400
    with pytest.warns(UserWarning, match="reads only the first 256 and ignores the rest"):
        n = check_query(minilm, long_query)
    assert n > 256
    with pytest.raises(ValueError, match="reads only the first 256"):
        check_query(minilm, long_query, on_long="raise")
    with pytest.warns(UserWarning, match="word pieces"):
        search_documents(long_query, minilm, gpl_embeddings, gpl_chunks, top_k=1)
    # what the warning says: the embedding ignores everything after the first 256 word pieces
    other_tail = head + "blah " * 300 + "patents patents patents"
    torch.testing.assert_close(embed(minilm, long_query), embed(minilm, other_tail))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert check_query(minilm, head) < 20  # short queries pass silently
    with pytest.raises(ValueError, match="query is empty"):
        check_query(minilm, "  ")


# ---- metrics ----------------------------------------------------------------------------------------------------------
def test_passage_hit_rules():
    gold = "You may charge any price or no price for each copy that you convey"  # 66 characters
    assert passage_hit(
        "  4. Conveying.\n  YOU MAY CHARGE any price or no\n price for each copy that you convey, and", gold
    )
    assert passage_hit("...end of a chunk. You may charge any price or no price for", gold)  # 59 of 66 characters
    assert not passage_hit("You may charge any price", gold)  # 24 of 66 characters
    assert passage_hit("You may charge any price", gold, min_fraction=0.3)
    with pytest.raises(ValueError, match="gold passage is empty"):
        passage_hit("text", "  ")


def test_relevant_chunks_with_overlap():
    chunks = chunk_text("alpha beta gamma delta epsilon zeta eta theta iota kappa", chunk_size=24, chunk_overlap=12)
    assert chunks == ["alpha beta gamma delta", "gamma delta epsilon", "epsilon zeta eta theta", "eta theta iota kappa"]
    assert relevant_chunks(chunks, "epsilon zeta") == {1, 2}  # chunk 1 holds "epsilon", 7 of the 12 characters
    assert relevant_chunks(chunks, "epsilon zeta", min_fraction=1.0) == {2}


def test_retrieval_metrics_by_hand():
    rankings = [[3, 0, 1, 2], [2, 1, 0, 3], [0, 1, 2, 3], [1, 2, 3, 0]]
    relevant = [{0}, {2}, {3}, {4}]  # first hits at ranks 2, 1, 4 and none
    m = retrieval_metrics(rankings, relevant, ks=(1, 3, 5))
    assert m == pytest.approx({"recall@1": 0.25, "recall@3": 0.5, "recall@5": 0.75, "mrr": (1 / 2 + 1 + 1 / 4) / 4})
    assert retrieval_metrics([np.array([1, 0])], [{0, 1}])["mrr"] == 1.0  # arrays work; any relevant chunk counts
    with pytest.raises(ValueError, match="one ranking per question"):
        retrieval_metrics([[0]], [])
    with pytest.raises(ValueError, match="k"):
        retrieval_metrics([[0]], [{0}], ks=(0,))


def test_qa_set_is_well_formed(tmp_path):
    qa = load_qa()
    assert len(qa) >= 40
    assert len({item["question"] for item in qa}) == len(qa)
    text = " ".join(rag_asset("GPL-3.txt").read_text().split()).lower()
    for item in qa:
        assert " ".join(item["passage"].split()).lower() in text, item["question"]
        assert len(item["passage"]) <= 150 and item["fact"].strip()
    (tmp_path / "bad.json").write_text('[{"question": "q", "fact": "f"}]')
    with pytest.raises(ValueError, match="question 0 lacks \\['passage'\\]"):
        load_qa(tmp_path / "bad.json")


def test_contains_fact():
    assert contains_fact("You have 30\n days to cure it.", "30 days")
    assert contains_fact("THE FREE SOFTWARE FOUNDATION", "Free Software Foundation")
    assert not contains_fact("thirty days", "30 days")


def test_evaluate_retrieval_perfect_and_hopeless():
    chunks = ["the cat sat", "a dog barked", "fish swim"]
    qa = [{"question": q, "passage": p, "fact": "x"} for q, p in (("cat?", "cat sat"), ("dog?", "dog barked"))]
    c = torch.eye(3)
    m = evaluate_retrieval(qa, chunks, c, c[:2])
    assert m == {"chunks": 3, "recall@1": 1.0, "recall@3": 1.0, "recall@5": 1.0, "mrr": 1.0}
    m = evaluate_retrieval(qa, chunks, c, c[[2, 2]])  # both queries point at the fish
    assert m["recall@1"] == 0.0 and m["recall@3"] == 1.0 and m["mrr"] == pytest.approx((1 / 2 + 1 / 3) / 2)


# ---- prompt -----------------------------------------------------------------------------------------------------------
def test_prompt_format():
    messages = build_rag_prompt("Can I sell copies?", ["chunk one", "chunk two"], topic="the AI Act")
    assert messages[0] == {
        "role": "system",
        "content": "You are a friendly assistant that answers questions about the AI Act. "
        "If the user is not making a question, you can ask for clarification",
    }
    assert messages[1]["content"] == "Context:\nchunk one\nchunk two\n\nQuestion: Can I sell copies?\nAnswer:"
    assert build_rag_prompt("Q?", [])[1]["content"] == "Question: Q?\nAnswer:"
    with pytest.raises(ValueError, match="query is empty"):
        build_rag_prompt("", ["c"])

    def fake(msgs, max_new_tokens, **kw):
        return [{"generated_text": msgs + [{"role": "assistant", "content": f"{max_new_tokens} {kw}"}]}]

    assert generate_answer(fake, messages, max_new_tokens=7, do_sample=False) == "7 {'do_sample': False}"
    with pytest.raises(ValueError, match="max_new_tokens"):
        generate_answer(fake, messages, max_new_tokens=0)


# ---- vector store and quantization ------------------------------------------------------------------------------------
def test_faiss_flat_equals_brute_force_on_the_qa_set(minilm, gpl_embeddings, gpl_chunks, tmp_path):
    qa = load_qa()
    queries = embed(minilm, [item["question"] for item in qa])
    brute_scores, brute = top_k_cosine(queries, gpl_embeddings, top_k=5)
    store = FaissStore(384).add(gpl_embeddings, gpl_chunks)
    scores, flat = store.search(queries, top_k=5)
    assert (flat == brute.numpy()).all()
    np.testing.assert_allclose(scores, brute_scores.numpy(), atol=1e-5)
    again = FaissStore.load(store.save(tmp_path / "store"))  # a fresh object from disk
    assert (again.search(queries, top_k=5)[1] == flat).all() and again.texts == gpl_chunks and again.kind == "flat"


def test_faiss_hnsw_and_errors(tmp_path):
    x = random_unit_vectors(2000, 64, seed=3)
    hnsw = FaissStore(64, kind="hnsw").add(x)
    _, idx = hnsw.search(x[:50], top_k=1)
    assert (idx[:, 0] == np.arange(50)).mean() >= 0.95  # each vector finds itself
    assert FaissStore.load(hnsw.save(tmp_path / "h")).kind == "hnsw"
    assert hnsw.set_ef_search(64).index.hnsw.efSearch == 64
    with pytest.raises(ValueError, match="only an HNSW store has ef_search"):
        FaissStore(64).set_ef_search(64)
    with pytest.raises(ValueError, match="kind"):
        FaissStore(64, kind="ivf")
    with pytest.raises(ValueError, match="expected \\[n, 64\\] vectors"):
        hnsw.add(np.zeros((3, 32)))
    with pytest.raises(ValueError, match="2 texts for 3 vectors"):
        FaissStore(64).add(x[:3], ["a", "b"])
    with pytest.raises(FileNotFoundError, match="no saved FaissStore"):
        FaissStore.load(tmp_path / "nothing")


def test_quantization_sizes_and_search():
    x = random_unit_vectors(500, 384, seed=4)
    assert [bytes_per_vector(384, p) for p in ("float32", "int8", "ubinary")] == [1536, 384, 48]
    assert bytes_per_vector(100, "ubinary") == 13
    assert quantize(x, "int8").shape == (500, 384) and quantize(x, "ubinary").shape == (500, 48)
    for precision in ("float32", "int8", "ubinary"):
        idx = quantized_top_k(x[:20], x, precision, top_k=3)
        assert idx.shape == (20, 3) and (idx[:, 0] == np.arange(20)).all()  # each vector is its own nearest
    with pytest.raises(ValueError, match="precision"):
        bytes_per_vector(384, "float16")
