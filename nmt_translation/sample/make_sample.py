"""Write sample/spa-eng_sample.zip: Spanish-English pairs in the layout of the Anki spa-eng.zip.

    python nmt_translation/sample/make_sample.py    # rewrites the archive, byte for byte the same

The sentences are generated from the grammar below, written for this repository (no sentence of
Tatoeba is in it), so the sample can be committed under the repository's licence. It is built to
have what makes the real data worth a careful evaluation, at a size a model learns in seconds:

- short everyday sentences: statements, negations, yes/no questions (both Spanish word orders),
  "where is" questions and places, imperatives with `¡...!` and "por favor", a few set phrases;
- a small vocabulary (about 250 words on each side) with accents, `ñ`, `¿ ?`, `¡ !`;
- one Spanish sentence, several English translations, as in Tatoeba: contractions ("I'm" and
  "I am"), synonyms ("close"/"shut", "movie"/"film"), the simple present and the progressive,
  the possessive `su` (his, her, their, your); each source gets one to three of them;
- several Spanish sentences, one English: tú, usted and a dropped pronoun all give "you";
- words that occur in one sentence only (`RARE`), as unseen words do in a real test set.

The archive holds `spa-eng/spa.txt` (`english<TAB>spanish`, one pair a line, sorted by English
length as the real file is) and `spa-eng/_about.txt`, a note the reader skips.
"""

from __future__ import annotations

import io
import random
import zipfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
ARCHIVE = HERE / "spa-eng_sample.zip"
SEED = 2026
SOURCES = 2400  # distinct generated Spanish sentences, besides the set phrases and RARE
REFS = {1: 0.55, 2: 0.30, 3: 0.15}  # how many English translations a source gets
ZIP_TIME = (2018, 5, 13, 0, 0, 0)  # the date of the real copy

# Subjects: Spanish, Spanish person (0 yo .. 4 ellos), gender, English, English person, may the
# Spanish pronoun be left out, the English possessive that `su` most likely means.
SUBJECTS = [
    ("yo", 0, "m", "I", "1s", True, "my"),
    ("tú", 1, "m", "you", "2", True, "your"),
    ("él", 2, "m", "he", "3s", False, "his"),
    ("ella", 2, "f", "she", "3s", False, "her"),
    ("usted", 2, "m", "you", "2", False, "your"),
    ("nosotros", 3, "m", "we", "1p", True, "our"),
    ("ellos", 4, "m", "they", "3p", False, "their"),
    ("ellas", 4, "f", "they", "3p", False, "their"),
    ("ustedes", 4, "m", "you", "2", False, "your"),
    ("Tom", 2, "m", "Tom", "3s", False, "his"),
    ("María", 2, "f", "Mary", "3s", False, "her"),
    ("Juan", 2, "m", "John", "3s", False, "his"),
    ("mi hermano", 2, "m", "my brother", "3s", False, "his"),
    ("mi hermana", 2, "f", "my sister", "3s", False, "her"),
    ("el niño", 2, "m", "the boy", "3s", False, "his"),
    ("la niña", 2, "f", "the girl", "3s", False, "her"),
    ("mis padres", 4, "m", "my parents", "3p", False, "their"),
]
BE = {"1s": ("am", "'m"), "2": ("are", "'re"), "3s": ("is", "'s"), "1p": ("are", "'re"),
      "3p": ("are", "'re")}  # fmt: skip

# Verbs: the five Spanish forms, the tú and usted imperatives, English (base, 3rd person, -ing or
# None where English has no progressive), and the kinds of object they take.
VERBS = {
    "comer": ("como comes come comemos comen", "come coma", [("eat", "eats", "eating")], "food"),
    "beber": ("bebo bebes bebe bebemos beben", "bebe beba", [("drink", "drinks", "drinking")],
              "drink"),
    "leer": ("leo lees lee leemos leen", "lee lea", [("read", "reads", "reading")], "text"),
    "escribir": ("escribo escribes escribe escribimos escriben", "escribe escriba",
                 [("write", "writes", "writing")], "letter"),
    "comprar": ("compro compras compra compramos compran", "compra compre",
                [("buy", "buys", "buying")], "thing food drink text"),
    "buscar": ("busco buscas busca buscamos buscan", "busca busque",
               [("look for", "looks for", "looking for"),
                ("search for", "searches for", "searching for")], "thing animal text"),
    "abrir": ("abro abres abre abrimos abren", "abre abra", [("open", "opens", "opening")],
              "openable"),
    "cerrar": ("cierro cierras cierra cerramos cierran", "cierra cierre",
               [("close", "closes", "closing"), ("shut", "shuts", "shutting")], "openable"),
    "ver": ("veo ves ve vemos ven", "", [("watch", "watches", "watching"),
                                         ("see", "sees", None)], "show"),
    "tener": ("tengo tienes tiene tenemos tienen", "", [("have", "has", None)],
              "thing animal"),
    "querer": ("quiero quieres quiere queremos quieren", "", [("want", "wants", None)],
               "thing animal food drink"),
    "necesitar": ("necesito necesitas necesita necesitamos necesitan", "",
                  [("need", "needs", None)], "thing drink"),
    "lavar": ("lavo lavas lava lavamos lavan", "lava lave", [("wash", "washes", "washing")],
              "washable"),
}  # fmt: skip

# Nouns: Spanish, gender, English words (synonyms), countable, kinds.
NOUNS = [
    ("libro", "m", ["book"], True, "text thing openable"),
    ("carta", "f", ["letter"], True, "text letter openable"),
    ("periódico", "m", ["newspaper", "paper"], True, "text"),
    ("mapa", "m", ["map"], True, "thing text"),
    ("manzana", "f", ["apple"], True, "food"),
    ("naranja", "f", ["orange"], True, "food"),
    ("pan", "m", ["bread"], False, "food"),
    ("arroz", "m", ["rice"], False, "food"),
    ("agua", "f", ["water"], False, "drink"),
    ("café", "m", ["coffee"], False, "drink"),
    ("leche", "f", ["milk"], False, "drink"),
    ("té", "m", ["tea"], False, "drink"),
    ("coche", "m", ["car"], True, "thing washable"),
    ("bicicleta", "f", ["bicycle", "bike"], True, "thing washable"),
    ("perro", "m", ["dog"], True, "animal washable"),
    ("gato", "m", ["cat"], True, "animal"),
    ("casa", "f", ["house"], True, "thing"),
    ("llave", "f", ["key"], True, "thing"),
    ("caja", "f", ["box"], True, "thing openable"),
    ("puerta", "f", ["door"], True, "openable"),
    ("ventana", "f", ["window"], True, "openable washable"),
    ("taza", "f", ["cup"], True, "washable thing"),
    ("película", "f", ["movie", "film"], True, "show"),
    ("partido", "m", ["game", "match"], True, "show"),
    ("televisión", "f", ["television", "TV"], False, "show"),
]
# Words in one sentence each (an umbrella is bought once in the whole sample).
RARE = [
    ("paraguas", "m", "umbrella"), ("sombrero", "m", "hat"), ("reloj", "m", "clock"),
    ("cuchillo", "m", "knife"), ("lápiz", "m", "pencil"), ("cuaderno", "m", "notebook"),
    ("espejo", "m", "mirror"), ("martillo", "m", "hammer"), ("guitarra", "f", "guitar"),
    ("maleta", "f", "suitcase"), ("almohada", "f", "pillow"), ("cuchara", "f", "spoon"),
    ("escoba", "f", "broom"), ("bufanda", "f", "scarf"), ("tetera", "f", "teapot"),
    ("sartén", "f", "frying pan"), ("corbata", "f", "tie"), ("vela", "f", "candle"),
    ("bolígrafo", "m", "pen"), ("cepillo", "m", "brush"), ("abrigo", "m", "coat"),
    ("pañuelo", "m", "handkerchief"), ("juguete", "m", "toy"), ("balón", "m", "ball"),
    ("cámara", "f", "camera"), ("lámpara", "f", "lamp"), ("manta", "f", "blanket"),
    ("peine", "m", "comb"), ("billetera", "f", "wallet"), ("mochila", "f", "backpack"),
]  # fmt: skip

# estar + adjective: the Spanish masculine and feminine (plurals add -s), English synonyms.
ADJECTIVES = [
    ("cansado", "cansada", ["tired"]), ("enfermo", "enferma", ["sick", "ill"]),
    ("contento", "contenta", ["happy", "glad"]), ("ocupado", "ocupada", ["busy"]),
    ("triste", "triste", ["sad"]), ("listo", "lista", ["ready"]),
    ("aburrido", "aburrida", ["bored"]), ("nervioso", "nerviosa", ["nervous"]),
    ("enojado", "enojada", ["angry", "mad"]), ("despierto", "despierta", ["awake"]),
]  # fmt: skip
ESTAR = ["estoy", "estás", "está", "estamos", "están"]
PLACES = [
    ("en la mesa", "on the table"), ("en la cocina", "in the kitchen"),
    ("en el coche", "in the car"), ("en el jardín", "in the garden"),
    ("debajo de la cama", "under the bed"), ("en la caja", "in the box"),
    ("en España", "in Spain"), ("en el colegio", "at school"), ("en casa", "at home"),
    ("en la oficina", "at the office", ), ("en el baño", "in the bathroom"),
]  # fmt: skip
PHRASES = [
    ("¡Hola!", ["Hello!", "Hi!"]), ("¡Gracias!", ["Thanks!", "Thank you!"]),
    ("¡Cuidado!", ["Careful!", "Watch out!", "Look out!"]), ("¡Socorro!", ["Help!"]),
    ("¡Vamos!", ["Let's go!", "Come on!"]), ("¿Qué pasa?", ["What's up?", "What's going on?"]),
    ("¿Quién es?", ["Who is it?", "Who's that?"]), ("¡Salud!", ["Cheers!"]),
    ("Buenos días.", ["Good morning."]), ("Buenas noches.", ["Good night.", "Good evening."]),
    ("Lo siento.", ["I'm sorry.", "Sorry."]), ("No sé.", ["I don't know.", "I do not know."]),
    ("¿Qué hora es?", ["What time is it?"]), ("¡Qué lástima!", ["What a pity!", "What a shame!"]),
    ("¡Ya voy!", ["I'm coming!", "Coming!"]), ("¡Date prisa!", ["Hurry up!", "Hurry!"]),
    ("¡Adiós!", ["Goodbye!", "Bye!"]), ("De nada.", ["You're welcome."]),
    ("¡Claro!", ["Of course!", "Sure!"]), ("Te quiero.", ["I love you."]),
    ("¡Espera!", ["Wait!"]), ("¡Siéntate!", ["Sit down!"]), ("¡Hasta mañana!", ["See you tomorrow!"]),
    ("¿Dónde estás?", ["Where are you?"]), ("¿Cómo estás?", ["How are you?"]),
    ("Tengo hambre.", ["I'm hungry.", "I am hungry."]), ("¿Tienes sed?", ["Are you thirsty?"]),
    ("¡Feliz cumpleaños!", ["Happy birthday!"]), ("¡Qué año!", ["What a year!"]),
]  # fmt: skip
ADVERBS = [  # Spanish, English, where it goes (end or before the verb), aspects it allows
    ("", "", "end", "simple progressive"), ("ahora", "now", "end", "progressive"),
    ("hoy", "today", "end", "simple progressive"), ("todos los días", "every day", "end", "simple"),
    ("por la mañana", "in the morning", "end", "simple"),
    ("siempre", "always", "before", "simple"), ("nunca", "never", "before", "simple"),
]  # fmt: skip
ADVERB_WEIGHTS = [8, 2, 1, 2, 1, 1, 1]


def capitalise(text: str) -> str:
    """Upper-case the first letter, after any ¿ or ¡ (as Spanish writes it)."""
    for i, char in enumerate(text):
        if char.isalpha():
            return text[:i] + char.upper() + text[i + 1 :]
    return text


def article(word: str) -> str:
    return "an" if word[0] in "aeiou" else "a"


def noun_phrase(rng: random.Random, noun: tuple, subject: tuple) -> tuple[str, list[str]]:
    """A Spanish noun phrase and its English translations, the likeliest first."""
    spanish, gender, english, countable, _ = noun
    the_es = "el" if gender == "m" or spanish == "agua" else "la"
    this_es = "este" if gender == "m" else "esta"
    choices = [("the", the_es), ("my", "mi"), ("your", "tu"), ("su", "su"), ("this", this_es)]
    choices += [("a", "un" if gender == "m" else "una")] if countable else [("", "")]
    det_en, det_es = rng.choice(choices)
    words_es = f"{det_es} {spanish}".strip()
    if det_en == "su":  # his, her, their, your: the subject's own first, as a reader guesses
        owners = [subject[6]] + [o for o in ("his", "her", "their", "your") if o != subject[6]]
        dets = owners[:3]
    elif det_en == "a":
        dets = [None]
    else:
        dets = [det_en]
    out = []
    for det in dets:
        for word in english:
            first = article(word) if det is None else det
            out.append(f"{first} {word}".strip())
    return words_es, out


def contracts(subject_en: str, person: str) -> bool:
    """Whether English writes 'X's' / 'X're' here: after pronouns and singular subjects only."""
    return subject_en in ("I", "you", "he", "she", "we", "they") or person == "3s"


def english_verb(subject_en: str, person: str, forms: tuple, aspect: str, negated: bool) -> list:
    """English verb groups after a subject, e.g. [" eats"], [" is eating", "'s eating"]."""
    base, third, ing = forms
    if aspect == "progressive":
        full, short = BE[person]
        if not contracts(subject_en, person):
            short = ""
        groups = [f" {full} not {ing}"] if negated else [f" {full} {ing}"]
        if short:
            groups.append(f"{short} not {ing}" if negated else f"{short} {ing}")
        if negated and person != "1s":
            groups.append(f" {full}n't {ing}")
        return groups
    if negated:
        do = "does" if person == "3s" else "do"
        return [f" {do}n't {base}", f" {do} not {base}"]
    return [f" {third if person == '3s' else base}"]


def statement(rng: random.Random) -> tuple[str, list[str]]:
    """[subject] [no] verb object [adverb] ., or the yes/no question of it."""
    subject = rng.choice(SUBJECTS)
    name = rng.choice(list(VERBS))
    forms_es, _, english, kinds = VERBS[name]
    nouns = [n for n in NOUNS if set(n[4].split()) & set(kinds.split())]
    noun = rng.choice(nouns)
    adverb_es, adverb_en, where, aspects = rng.choices(ADVERBS, ADVERB_WEIGHTS)[0]
    kind = rng.choices(["statement", "negation", "question"], [5, 2, 3])[0]
    if kind != "statement" and where == "before":
        adverb_es, adverb_en, where, aspects = ADVERBS[0]
    can_progress = [f for f in english if f[2] is not None]
    if not can_progress and adverb_es not in ("", "hoy"):  # not "I have a cat every day"
        adverb_es, adverb_en, where, aspects = ADVERBS[0]
    allowed = [a for a in aspects.split() if a == "simple" or can_progress]
    if not allowed:  # "ahora" with a verb that has no progressive: no adverb then
        adverb_es, adverb_en, where, aspects = ADVERBS[0]
        allowed = ["simple"]
    object_es, objects_en = noun_phrase(rng, noun, subject)
    verb_es = forms_es.split()[subject[1]]
    pronoun = subject[0] if not subject[5] or rng.random() < 0.3 else ""
    negation = "no " if kind == "negation" else ""
    before = f"{adverb_es} " if where == "before" else ""
    after = f" {adverb_es}" if where == "end" and adverb_es else ""
    if kind == "question" and pronoun and rng.random() < 0.5:  # ¿Come Tom pan?
        core = f"{verb_es} {pronoun} {object_es}"
    else:
        core = f"{pronoun} {negation}{before}{verb_es} {object_es}".strip()
    end = "?" if kind == "question" else "."
    spanish = capitalise(f"{'¿' if kind == 'question' else ''}{core}{after}{end}")

    person, subject_en = subject[4], subject[3]
    adverb_tail = f" {adverb_en}" if where == "end" and adverb_en else ""
    translations = []
    for aspect in allowed:
        for forms in can_progress if aspect == "progressive" else english:
            for obj in objects_en:
                if kind == "question":
                    if aspect == "progressive":
                        be = BE[person][0]
                        text = f"{be} {subject_en} {forms[2]} {obj}{adverb_tail}?"
                    else:
                        do = "does" if person == "3s" else "do"
                        text = f"{do} {subject_en} {forms[0]} {obj}{adverb_tail}?"
                    translations.append(capitalise(text))
                    continue
                for group in english_verb(subject_en, person, forms, aspect, kind == "negation"):
                    pre = f" {adverb_en}" if where == "before" else ""
                    if pre and group.startswith(" "):
                        group = f"{pre}{group}"
                    text = f"{subject_en}{group} {obj}{adverb_tail}."
                    translations.append(capitalise(text))
    return spanish, translations


def state(rng: random.Random) -> tuple[str, list[str]]:
    """[subject] [no] está adjective ., or ¿...?: 'I'm tired.', 'Is Tom tired?'."""
    subject = rng.choice(SUBJECTS)
    masculine, feminine, english = rng.choice(ADJECTIVES)
    adjective = feminine if subject[2] == "f" else masculine
    if subject[1] in (3, 4) and not adjective.endswith("s"):
        adjective += "s"
    kind = rng.choices(["statement", "negation", "question"], [5, 2, 3])[0]
    verb = ESTAR[subject[1]]
    pronoun = subject[0] if not subject[5] or rng.random() < 0.3 else ""
    negation = "no " if kind == "negation" else ""
    core = f"{pronoun} {negation}{verb} {adjective}".strip()
    spanish = capitalise(f"¿{core}?" if kind == "question" else f"{core}.")
    person, subject_en = subject[4], subject[3]
    full, short = BE[person]
    translations = []
    for word in english:
        if kind == "question":
            translations.append(capitalise(f"{full} {subject_en} {word}?"))
            continue
        not_ = " not" if kind == "negation" else ""
        if contracts(subject_en, person):
            translations.append(capitalise(f"{subject_en}{short}{not_} {word}."))
        translations.append(capitalise(f"{subject_en} {full}{not_} {word}."))
        if not_ and person != "1s":
            translations.append(capitalise(f"{subject_en} {full}n't {word}."))
    return spanish, translations


def location(rng: random.Random) -> tuple[str, list[str]]:
    """'¿Dónde está el libro?' and 'El libro está en la mesa.'."""
    noun = rng.choice([n for n in NOUNS if n[3] and n[0] not in ("película", "partido", "casa")])
    the_es = "el" if noun[1] == "m" else "la"
    if rng.random() < 0.4:
        spanish = f"¿Dónde está {the_es} {noun[0]}?"
        english = [f"Where is the {w}?" for w in noun[2]] + [f"Where's the {w}?" for w in noun[2]]
        return capitalise(spanish), english
    place_es, place_en = rng.choice(PLACES)
    spanish = capitalise(f"{the_es} {noun[0]} está {place_es}.")
    english = [f"The {w} is {place_en}." for w in noun[2]]
    english += [f"The {w}'s {place_en}." for w in noun[2]]
    return spanish, english


def command(rng: random.Random) -> tuple[str, list[str]]:
    """'¡Abre la puerta!' or 'Abra la puerta, por favor.'."""
    name = rng.choice([v for v in VERBS if VERBS[v][1]])
    _, imperatives, english, kinds = VERBS[name]
    verb = rng.choice(imperatives.split())  # tú or usted
    noun = rng.choice([n for n in NOUNS if set(n[4].split()) & set(kinds.split())])
    the_es = "el" if noun[1] == "m" or noun[0] == "agua" else "la"
    object_es = f"{the_es} {noun[0]}"
    objects_en = [f"the {w}" for w in noun[2]]
    if rng.random() < 0.3:
        spanish = capitalise(f"{verb} {object_es}, por favor.")
        polite = [f"{forms[0]} {obj}, please." for forms in english for obj in objects_en]
        polite += [f"Please {forms[0]} {obj}." for forms in english for obj in objects_en]
        return spanish, [capitalise(e) for e in polite]
    spanish = capitalise(f"¡{verb} {object_es}!")
    return spanish, [capitalise(f"{forms[0]} {obj}!") for forms in english for obj in objects_en]


def rare(rng: random.Random, spanish_noun: str, gender: str, english: str) -> tuple[str, list]:
    """One sentence about a RARE noun: 'Tom compra un paraguas.'."""
    subject = rng.choice([s for s in SUBJECTS if not s[5]])
    name = rng.choice(["comprar", "buscar", "querer", "necesitar", "tener"])
    forms_es, _, forms_en, _ = VERBS[name]
    noun = (spanish_noun, gender, [english], True, "thing")
    object_es, objects_en = noun_phrase(rng, noun, subject)
    spanish = capitalise(f"{subject[0]} {forms_es.split()[subject[1]]} {object_es}.")
    english_all = []
    for forms in forms_en:
        for obj in objects_en:
            for group in english_verb(subject[3], subject[4], forms, "simple", False):
                english_all.append(capitalise(f"{subject[3]}{group} {obj}."))
    return spanish, english_all


def pick(rng: random.Random, translations: list[str]) -> list[str]:
    """One to three distinct translations, the likelier (earlier) ones more often."""
    unique = list(dict.fromkeys(translations))
    count = min(len(unique), rng.choices(list(REFS), list(REFS.values()))[0])
    weights = [1 / (1 + i) for i in range(len(unique))]
    chosen: list[str] = []
    while len(chosen) < count:
        choice = rng.choices(unique, weights)[0]
        if choice not in chosen:
            chosen.append(choice)
    return chosen


def pairs(rng: random.Random) -> list[tuple[str, str]]:
    """(english, spanish) lines of the sample, in the real file's order."""
    makers = [statement, state, location, command]
    weights = [6, 2, 1, 1]
    sources: dict[str, list[str]] = {}
    for spanish, english in PHRASES:
        sources[spanish] = pick(rng, english)
    for spanish_noun, gender, english in RARE:
        spanish, translations = rare(rng, spanish_noun, gender, english)
        sources.setdefault(spanish, pick(rng, translations))
    generated = 0
    while generated < SOURCES:
        spanish, translations = rng.choices(makers, weights)[0](rng)
        if spanish not in sources:
            sources[spanish] = pick(rng, translations)
            generated += 1
    lines = {(e, s) for s, refs in sources.items() for e in refs}
    return sorted(lines, key=lambda pair: (len(pair[0]), pair))


ABOUT = """\
A generated sample in the layout of the Anki/Tatoeba spa-eng.zip, made by
nmt_translation/sample/make_sample.py for the kubeflow case studies. The
sentences were written for that repository and are under its licence; they are
not Tatoeba sentences. The real data: https://www.manythings.org/anki/ and
https://tatoeba.org, CC BY 2.0 France.
"""


def write_archive(path: Path = ARCHIVE) -> Path:
    """A reproducible zip: fixed member order, times and permissions, deflate level 9."""
    rng = random.Random(SEED)
    text = "".join(f"{english}\t{spanish}\n" for english, spanish in pairs(rng))
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, body in [("spa-eng/_about.txt", ABOUT), ("spa-eng/spa.txt", text)]:
            info = zipfile.ZipInfo(name, date_time=ZIP_TIME)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.create_system = 3  # Unix, whatever machine writes it
            info.external_attr = 0o644 << 16
            archive.writestr(info, body.encode("utf-8"), compresslevel=9)
    path.write_bytes(buffer.getvalue())
    return path


if __name__ == "__main__":
    written = write_archive()
    print(f"{written}: {written.stat().st_size:,} bytes")
