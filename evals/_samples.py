"""Build the small real sample sets in `samples/` from the shared photos (run once; the output is committed).

    python -m rcmu_agent.evals._samples /path/to/shared/data

Photos are downscaled (longest side 640 px) and copied, so the samples travel with the package; face
boxes come from the real dlib detector on those copies; object boxes (cat, cup, saucer) were drawn
by hand. Every personal fact below is made up for this sample — none is true of the people shown.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from rcmu_agent.evals.datasets import NOT_ENOUGH_INFORMATION, load_rcmu, load_rcpbench, load_yollava

SAMPLES = Path(__file__).resolve().parent / "samples"
MAX_SIDE = 640

PEOPLE = {
    "obama": (
        "Barack Obama",
        "is the user's chess partner, walks his water dog Bo before breakfast and coaches a "
        "youth basketball team on Saturdays",
    ),
    "biden": (
        "Joe Biden",
        "is the user's uncle Joe, restores vintage Corvettes in his garage and eats a bowl of "
        "chocolate-chip ice cream every morning",
    ),
    "kit_harington": (
        "Kit Harington",
        "is the user's old college roommate, bakes sourdough every Sunday and is learning to play the cello",
    ),
    "rose_leslie": (
        "Rose Leslie",
        "is the user's cousin, runs a small bookshop in Aberdeen and keeps bees on its roof",
    ),
    "alex_lacamoire": (
        "Alex Lacamoire",
        "is the user's piano teacher, writes jingles for a local radio station and collects vintage metronomes",
    ),
}
CAT_INFO = (
    "Chelsea is the user's eight-year-old tabby cat, who sleeps on the radiator and hides from the vacuum cleaner"
)
CUP_INFO = "this red espresso cup was a present from the user's sister Marta, bought in Naples in 2019"
SAUCER_INFO = "the matching saucer got chipped when the user moved flat last spring"
CAT_BOX = [10.0, 0.0, 440.0, 300.0]
CUP_BOX = [170.0, 15.0, 415.0, 310.0]
SAUCER_BOX = [75.0, 70.0, 480.0, 385.0]
REFUSE = "Cannot be answered. The information does not say"

REFERENCES = {
    "obama": ["obama_obama.jpg", "obama_obama2.jpg"],
    "biden": ["biden_biden.jpg", "biden_biden2.jpg"],
    "kit_harington": ["kit_harington_john1.jpeg"],
    "rose_leslie": ["rose_leslie_img1.jpg"],
    "alex_lacamoire": ["alex_lacamoire_img1.jpg"],
}


def _shrink(image: Any) -> Any:
    from PIL import Image

    image = image.convert("RGB")
    scale = MAX_SIDE / max(image.size)
    if scale < 1:
        image = image.resize((round(image.width * scale), round(image.height * scale)), Image.Resampling.LANCZOS)
    return image


def _copy_images(data: Path) -> None:
    from PIL import Image

    out = SAMPLES / "images"
    (out / "reference").mkdir(parents=True, exist_ok=True)
    for names in REFERENCES.values():
        for name in names:
            _shrink(Image.open(data / "faces" / "reference" / name)).save(
                out / "reference" / Path(name).with_suffix(".jpg").name, quality=90
            )
    for name in ("two_people.jpg", "obama1.jpg", "alex_lacamoire1.jpg"):
        _shrink(Image.open(data / "faces" / "scenes" / name)).save(out / name, quality=90)
    for name in ("chelsea.png", "coffee.png"):
        Image.open(data / "objects" / name).convert("RGB").save(out / Path(name).with_suffix(".jpg").name, quality=90)
    # Two photos side by side: a second scene with two known people (Kit left, Rose right).
    kit = Image.open(data / "faces" / "reference" / "kit_harington_john2.jpeg").convert("RGB")
    rose = Image.open(data / "faces" / "reference" / "rose_leslie_img2.jpg").convert("RGB")
    height = 400
    kit = kit.resize((round(kit.width * height / kit.height), height), Image.Resampling.LANCZOS)
    rose = rose.resize((round(rose.width * height / rose.height), height), Image.Resampling.LANCZOS)
    both = Image.new("RGB", (kit.width + rose.width, height))
    both.paste(kit, (0, 0))
    both.paste(rose, (kit.width, 0))
    _shrink(both).save(out / "kit_and_rose.jpg", quality=90)


def _faces(name: str) -> list[list[float]]:
    """dlib face boxes, left to right."""
    from rcmu_agent.faces import FaceDetector
    from rcmu_agent.images import load_image

    regions = FaceDetector().detect(load_image(SAMPLES / "images" / name))
    return [list(r.box) for r in sorted(regions, key=lambda r: r.box[0])]


def _person(key: str, box: list[float]) -> dict[str, Any]:
    name, info = PEOPLE[key]
    return {"box": box, "category": "person", "info": f"{name} {info}", "name": name}


def _rcmu() -> list[dict[str, Any]]:
    obama, biden = _faces("two_people.jpg")
    (obama1,) = _faces("obama1.jpg")
    (alex,) = _faces("alex_lacamoire1.jpg")
    pair = [_person("obama", obama), _person("biden", biden)]
    solo_obama = [_person("obama", obama1)]
    solo_alex = [_person("alex_lacamoire", alex)]
    cat = [{"box": CAT_BOX, "category": "cat", "info": CAT_INFO, "name": "Chelsea"}]
    coffee = [
        {"box": CUP_BOX, "category": "cup", "info": CUP_INFO, "name": "espresso cup"},
        {"box": SAUCER_BOX, "category": "saucer", "info": SAUCER_INFO, "name": "saucer"},
    ]
    rows = [
        (
            "two_people.jpg",
            "V2C",
            "What does the man with the lilac tie coach on Saturdays?",
            "He coaches a youth basketball team on Saturdays [1].",
            pair,
        ),
        (
            "two_people.jpg",
            "V2C",
            "What does the man wearing a striped tie restore in his garage?",
            "He restores vintage Corvettes in his garage [2].",
            pair,
        ),
        (
            "two_people.jpg",
            "C2V",
            "What colour is the tie of the man who owns a dog named Bo?",
            "His tie is lilac, worn with a white shirt and a dark suit [1].",
            pair,
        ),
        (
            "two_people.jpg",
            "C2V",
            "What is the man who eats ice cream every morning wearing on his wrist?",
            "He wears a silver wristwatch on his left wrist [2].",
            pair,
        ),
        (
            "two_people.jpg",
            "UA-V2C",
            "What is the name of the dog owned by the man wearing a striped tie?",
            f"{REFUSE} whether the man in the striped tie has a dog.",
            pair,
        ),
        (
            "two_people.jpg",
            "UA-C2V",
            "What colour is the apron of the man who bakes sourdough?",
            f"{REFUSE} that anyone in the image bakes sourdough.",
            pair,
        ),
        (
            "two_people.jpg",
            "RCID",
            None,
            "Barack Obama [1], the user's chess partner, stands on the left in a dark suit and lilac tie with his arms "
            "crossed, next to the user's uncle Joe Biden [2], who wears a striped tie and a wristwatch.",
            pair,
        ),
        (
            "obama1.jpg",
            "V2C",
            "What is the name of this man's dog?",
            "His dog is a water dog called Bo [1].",
            solo_obama,
        ),
        ("obama1.jpg", "UA-V2C", "Which city was this man born in?", f"{REFUSE} where he was born.", solo_obama),
        (
            "alex_lacamoire1.jpg",
            "V2C",
            "What does the smiling man collect?",
            "He collects vintage metronomes [1].",
            solo_alex,
        ),
        (
            "alex_lacamoire1.jpg",
            "C2V",
            "What is the piano teacher wearing over his blue shirt?",
            "He wears a dark waistcoat with a small pin over his blue shirt and a striped tie [1].",
            solo_alex,
        ),
        (
            "alex_lacamoire1.jpg",
            "UA-C2V",
            "What is the beekeeper holding in her hands?",
            f"{REFUSE} that a beekeeper is in the image.",
            solo_alex,
        ),
        ("chelsea.jpg", "V2C", "How old is the cat?", "Chelsea is eight years old [1].", cat),
        (
            "chelsea.jpg",
            "C2V",
            "What colour are the eyes of the cat that hides from the vacuum cleaner?",
            "Her eyes are yellowish green [1].",
            cat,
        ),
        ("chelsea.jpg", "UA-V2C", "What is the cat's favourite food?", f"{REFUSE} what the cat likes to eat.", cat),
        (
            "coffee.jpg",
            "V2C",
            "Who gave the user the cup?",
            "The cup was a present from the user's sister Marta [1].",
            coffee,
        ),
        (
            "coffee.jpg",
            "C2V",
            "What is inside the cup that was bought in Naples?",
            "It holds an espresso with a light brown crema [1].",
            coffee,
        ),
        (
            "coffee.jpg",
            "RCID",
            None,
            "The red espresso cup from Naples, a present from Marta [1], sits full of espresso on its matching saucer, "
            "chipped during last spring's move [2], with a silver spoon on a wooden table.",
            coffee,
        ),
    ]
    items = []
    for number, (image, kind, question, answer, regions) in enumerate(rows, start=1):
        item: dict[str, Any] = {"id": f"rcmu-{number:03d}", "image": f"../images/{image}", "kind": kind}
        if question:
            item["question"] = question
        item["answer"] = answer
        item["regions"] = regions
        items.append(item)
    return items


def _rcpbench() -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    gallery = [
        {
            "id": key,
            "name": name,
            "category": "person",
            "info": f"{name} {info}",
            "photos": [f"../images/reference/{Path(n).with_suffix('.jpg').name}" for n in REFERENCES[key]],
        }
        for key, (name, info) in PEOPLE.items()
    ]
    obama, biden = _faces("two_people.jpg")
    kit, rose = _faces("kit_and_rose.jpg")
    (obama1,) = _faces("obama1.jpg")
    (alex,) = _faces("alex_lacamoire1.jpg")
    pair = [{"entity": "obama", "box": obama}, {"entity": "biden", "box": biden}]
    couple = [{"entity": "kit_harington", "box": kit}, {"entity": "rose_leslie", "box": rose}]
    rows = [
        (
            "two_people.jpg",
            "V2C",
            "What does the man with the lilac tie coach?",
            ["A youth basketball team", "A chess club", "A church choir"],
            0,
            "obama",
            pair,
        ),
        (
            "two_people.jpg",
            "V2C",
            "What does the man wearing a striped tie restore in his garage?",
            ["Old pianos", "Vintage Corvettes", "Sailing boats"],
            1,
            "biden",
            pair,
        ),
        (
            "two_people.jpg",
            "C2V",
            "Where in the photo is the person who walks a dog named Bo?",
            ["On the right", "In the middle", "On the left"],
            2,
            "obama",
            pair,
        ),
        (
            "two_people.jpg",
            "C2V",
            "What pattern is on the tie of the person who eats ice cream every morning?",
            ["Stripes", "Polka dots", "It is plain lilac"],
            0,
            "biden",
            pair,
        ),
        (
            "kit_and_rose.jpg",
            "V2C",
            "Which instrument is the man with the fur cloak learning?",
            ["The violin", "The cello", "The piano"],
            1,
            "kit_harington",
            couple,
        ),
        (
            "kit_and_rose.jpg",
            "V2C",
            "What does the red-haired woman keep on the roof of her shop?",
            ["Pigeons", "Solar panels", "Bees"],
            2,
            "rose_leslie",
            couple,
        ),
        (
            "kit_and_rose.jpg",
            "C2V",
            "What colour is the hair of the person who runs a bookshop?",
            ["Auburn red", "Black", "Blonde"],
            0,
            "rose_leslie",
            couple,
        ),
        (
            "obama1.jpg",
            "V2C",
            "What is the name of this man's dog?",
            ["Rex", "Bo", "Max"],
            1,
            "obama",
            [{"entity": "obama", "box": obama1}],
        ),
        (
            "alex_lacamoire1.jpg",
            "V2C",
            "What does this man collect?",
            ["Vintage metronomes", "Stamps", "Old maps"],
            0,
            "alex_lacamoire",
            [{"entity": "alex_lacamoire", "box": alex}],
        ),
    ]
    questions = []
    for number, (image, kind, question, options, gold, target, entities) in enumerate(rows, start=1):
        letters = {chr(65 + i): text for i, text in enumerate([*options, NOT_ENOUGH_INFORMATION])}
        questions.append(
            {
                "id": f"rcp-{number:03d}",
                "image": f"../images/{image}",
                "kind": kind,
                "question": question,
                "options": letters,
                "answer": chr(65 + gold),
                "target": target,
                "entities": entities,
            }
        )
    return gallery, questions


def _yollava() -> dict[str, Any]:
    database = {
        "concept_dict": {
            f"<{key}>": {
                "name": key,
                "image": [f"../images/reference/{Path(n).with_suffix('.jpg').name}" for n in REFERENCES[key]],
                "info": f"<{key}> ({PEOPLE[key][0]}) {PEOPLE[key][1]}",
                "category": "person",
            }
            for key in PEOPLE
        }
    }
    visual = {
        "obama": {
            "../images/obama1.jpg": {
                "question": "What colour is sks's tie?",
                "options": {"A": "Blue", "B": "Red"},
                "correct_answer": "A",
            },
            "../images/two_people.jpg": {
                "question": "Are sks's arms crossed?",
                "options": {"A": "No", "B": "Yes"},
                "correct_answer": "B",
            },
        },
        "alex_lacamoire": {
            "../images/alex_lacamoire1.jpg": {
                "question": "What is sks wearing over his shirt?",
                "options": {"A": "A waistcoat", "B": "A hoodie"},
                "correct_answer": "A",
            },
        },
        "rose_leslie": {
            "../images/kit_and_rose.jpg": {
                "question": "Is sks's hair long or short?",
                "options": {"A": "Short", "B": "Long"},
                "correct_answer": "B",
            },
        },
    }
    text = {
        "kit_harington": {
            "0": {
                "question": "What does sks bake every Sunday?",
                "option": {"A": "Sourdough", "B": "Croissants"},
                "correct_answer": "A",
            }
        },
        "biden": {
            "0": {
                "question": "What does sks restore?",
                "option": {"A": "Bicycles", "B": "Vintage Corvettes"},
                "correct_answer": "B",
            }
        },
    }
    return {"database.json": database, "yollava-visual-qa.json": visual, "yollava-text-only-qa.json": text}


def _write_jsonl(path: Path, rows: list[dict[str, Any]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")


def build(data: Path) -> None:
    _copy_images(data)
    _write_jsonl(SAMPLES / "rcmu" / "test.jsonl", _rcmu())
    gallery, questions = _rcpbench()
    _write_jsonl(SAMPLES / "rcpbench" / "gallery.jsonl", gallery)
    _write_jsonl(SAMPLES / "rcpbench" / "questions.jsonl", questions)
    (SAMPLES / "yollava").mkdir(parents=True, exist_ok=True)
    for name, value in _yollava().items():
        (SAMPLES / "yollava" / name).write_text(json.dumps(value, indent=2, ensure_ascii=False) + "\n")
    # every file must load cleanly with the public loaders
    assert not load_rcmu(SAMPLES / "rcmu" / "test.jsonl").problems
    assert not load_rcpbench(SAMPLES / "rcpbench").problems
    assert not load_yollava(SAMPLES / "yollava").problems


if __name__ == "__main__":
    build(Path(sys.argv[1]) if len(sys.argv) > 1 else Path("../shared/data"))
