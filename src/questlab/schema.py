"""The QUEST columns, explicit: id, the 10 inputs, and the 30 targets in submission order.

The loop questlab replaces once inferred targets as "every column not in test" and counted 37
(user names, url, category and host among them). Here nothing is inferred.
"""

from __future__ import annotations

ID = "qa_id"

TITLE, BODY, ANSWER = "question_title", "question_body", "answer"
CATEGORY, HOST, URL = "category", "host", "url"
# Added by the CV runner to a fold's train rows when pseudo-labelled rows join them (True on
# those): models that hold out train questions to stop early hold out real ones only.
PSEUDO = "questlab_pseudo"

INPUT_COLUMNS: tuple[str, ...] = (
    TITLE,
    BODY,
    "question_user_name",
    "question_user_page",
    ANSWER,
    "answer_user_name",
    "answer_user_page",
    URL,
    CATEGORY,
    HOST,
)

# Columns that must hold non-empty text in every row: a model cannot rate a pair without them.
REQUIRED_TEXT: tuple[str, ...] = (TITLE, BODY, ANSWER, CATEGORY, HOST)
# Inputs a file of pairs to predict may leave out (read as empty cells): the models need the five above.
OPTIONAL_INPUTS: tuple[str, ...] = tuple(c for c in INPUT_COLUMNS if c not in REQUIRED_TEXT)

QUESTION_TARGETS: tuple[str, ...] = (
    "question_asker_intent_understanding",
    "question_body_critical",
    "question_conversational",
    "question_expect_short_answer",
    "question_fact_seeking",
    "question_has_commonly_accepted_answer",
    "question_interestingness_others",
    "question_interestingness_self",
    "question_multi_intent",
    "question_not_really_a_question",
    "question_opinion_seeking",
    "question_type_choice",
    "question_type_compare",
    "question_type_consequence",
    "question_type_definition",
    "question_type_entity",
    "question_type_instructions",
    "question_type_procedure",
    "question_type_reason_explanation",
    "question_type_spelling",
    "question_well_written",
)

ANSWER_TARGETS: tuple[str, ...] = (
    "answer_helpful",
    "answer_level_of_information",
    "answer_plausible",
    "answer_relevance",
    "answer_satisfaction",
    "answer_type_instructions",
    "answer_type_procedure",
    "answer_type_reason_explanation",
    "answer_well_written",
)

# Submission order (sample_submission.csv): the 21 question targets, then the 9 answer targets.
TARGETS: tuple[str, ...] = QUESTION_TARGETS + ANSWER_TARGETS
N_TARGETS = len(TARGETS)
assert N_TARGETS == 30

TRAIN_COLUMNS: tuple[str, ...] = (ID, *INPUT_COLUMNS, *TARGETS)
TEST_COLUMNS: tuple[str, ...] = (ID, *INPUT_COLUMNS)
