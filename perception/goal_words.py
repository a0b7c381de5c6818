"""The words a goal instruction may use, and the clean-up before the rule-based goal parser reads it:
accents and case, German/French/Spanish phrases into English, typos of known words, canonical spellings.

The parser in perception/goals.py accounts for every word it reads; a word in none of these lists is
'not understood' and the instruction is refused (or handed to a fallback), never silently skipped.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from typing import Any

# ----------------------------------------------------------------------------------------------------------
# Vocabulary the parser consumes without meaning (politeness, motion verbs, map nouns).

FILLER_WORDS: frozenset[str] = frozenset(
    """
    a an the to toward towards into in inside within at on onto for of up down back also just simply
    please kindly now then first next finally immediately quickly fast slowly carefully safely directly
    straight instead there
    go goes going head heads heading move moves moving navigate navigating reach reaching get getting
    travel travelling traveling drive driving walk walking run running roll rolling find return returning
    come coming visit visiting steer steering proceed proceeding make bring take taking put place touch
    touching tap hit arrive arriving stop aim advance continue hurry rush race park settle land
    i you your yourself me my us we it its let let's lets can could would will should must need want like
    i'd i'm okay ok hey hi so robot agent gripper arm hand tool
    maze map grid board table picture image workspace scene world arena level floor screen environment
    labyrinth one
    """.split()
)
"""Words that never change which target is meant or what to avoid."""

FILLER_PHRASES: tuple[str, ...] = (
    r"\b(?:make|find|work)\s+(?:your|its|the|my)\s+way\b",
    r"\ball\s+the\s+way\b",
    r"\bend\s+up\b",
    r"\bright\s+(?:now|away)\b",
    r"\bas\s+(?:soon|fast|quickly)\s+as\s+(?:possible|you\s+can)\b",
    r"\bwith\s+(?:the|your|its)\s+(?:gripper|arm|hand|end-effector|tool)\b",
    r"\bgo\s+ahead\b",
    r"\bthe\s+end-effector\b|\bend-effector\b",
    r"\bover(?=\s+to\b)",
    r"\b(?:wait|stay|remain|stop)\s+there\b",
)
"""Several-word phrases that mean no more than their filler words (checked before single words)."""

MOTION_VERBS: frozenset[str] = frozenset(
    """go goes going head heading move moving navigate navigating reach reaching get getting travel
    travelling traveling drive driving walk walking run running roll rolling find return returning come
    coming visit visiting steer proceed bring take taking touch touching tap hit arrive arriving stop
    park settle land advance continue aim hurry rush race follow following use using""".split()
)
"""Words that start a new request: a clause holding one no longer continues a list of places to avoid."""

TYPO_TARGETS: frozenset[str] = frozenset(
    """goal target red ball marker destination finish start starting beginning cell square column row
    corner top bottom upper lower left right centre middle half room quadrant quarter side region
    area section avoid avoiding without entering touching crossing route corridor path passage hallway
    above below height higher zone forbidden obstacle barrier return reach navigate position maze table
    gripper north south east west please through between stay keep away green towards toward never
    enter cross touch visit where started began travel instead head move drive walk""".split()
)
"""Words a misspelling is corrected to; other words are left as they are (and so refused if unknown)."""

NOT_TYPOS: frozenset[str] = frozenset(
    """lift light bright night tight fight sight might call tell well bell sell hall wall walls gold goat
    coal cold stat sort stop step stair halves read are blow easy eat eats halt loser maker marked market pat
    patch redo rout say slide stag star stray sty stated stating starred thorough though were tablet corer
    cornet gal goad rote went made root size stare stark ease bill bull bald bale starter had hear heard""".split()
)
"""Real words one edit from a vocabulary word (found by auditing common words): never 'corrected'. Plurals
and other inflections of vocabulary words are never corrected either (_inflected)."""

COMMON_TYPOS: dict[str, str] = {"teh": "the", "hte": "the", "ot": "to", "tot": "to", "adn": "and", "nad": "and"}
"""Misspellings of short filler words, too short for the edit-distance rule."""

# ----------------------------------------------------------------------------------------------------------
# Other languages: phrase tables applied in order after accents are stripped and the text is lowercased.


@dataclass(frozen=True)
class Language:
    """A language the rules can read: words that identify it, and its phrases in English."""

    name: str
    cues: frozenset[str]
    phrases: tuple[tuple[str, str], ...]

    def translate(self, text: str) -> str:
        for pattern, english in self.phrases:
            text = re.sub(pattern, english, text)
        return re.sub(r"\s+", " ", text).strip()


_DIRECTIONS_DE = (
    (r"\b(?:obere[nmrs]?|oben)\b", "top"),
    (r"\b(?:untere[nmrs]?|unten)\b", "bottom"),
    (r"\b(?:linke[nmrs]?|links)\b", "left"),
    (r"\b(?:rechte[nmrs]?|rechts)\b", "right"),
    (r"\bmittlere[nmrs]?\b", "middle"),
)

GERMAN = Language(
    name="German",
    cues=frozenset(
        """geh gehe fahr fahre lauf laufe zum zur zu nicht ecke zelle feld roten rote roter ziel und der
        die das den dem bleib bleibe meide vermeide ohne zuruck oben unten links rechts obere oberen
        untere unteren linke linken rechte rechten halfte mitte zeile spalte kugel uber unter beruhre
        erreiche greifer bitte dann aber labyrinth labyrinths tisch tisches weg korridor gang startpunkt
        anfang kiste wand hindernis hoher mindestens hochstens halte nimm folge benutze niemals nie
        bewege dich ins im am nach verbotene wo du bist gestartet mittleren""".split()
    ),
    phrases=(
        (r"\bwo du (?:gestartet|losgefahren|angefangen) bist\b", "where you started"),
        (r"\bohne (?:die |den |das |dem )?(.+?) zu (?:betreten|beruhren|durchqueren|befahren|kreuzen)\b",
         r"without entering the \1"),
        (r"\b(?:bleib(?:e)?|halte? dich) (?:weg|fern) (?:von|vom)\b", "stay away from"),
        (r"\bhalte? abstand (?:zu|von|zum|zur)\b", "stay away from"),
        (r"\bbleib(?:e)? (?:aus|ausserhalb)\b", "stay out of"),
        (r"\b(?:ver)?meide(?:n)?\b", "avoid"),
        (r"\bgeh(?:e)? (?:niemals|nie) (?:unter|unterhalb)\b", "never go below"),
        (r"\bgeh(?:e)? nicht\b", "do not go"),
        (r"\bfahr(?:e)? nicht\b", "do not go"),
        (r"\bberuhre nicht\b", "do not touch"),
        (r"\b(?:(?:kehre|komm)\s+)?zuruck\b", "return"),
        (r"\bbeweg(?:e)? dich\b", "move"),
        (r"\b(?:geh|gehe|fahr|fahre|lauf|laufe)\b", "go"),
        (r"\bnavigiere\b", "navigate"),
        (r"\berreiche\b", "reach"),
        (r"\bberuhre\b", "touch"),
        (r"\bnimm\b", "take"),
        (r"\bfolge\b", "follow"),
        (r"\bbenutze\b", "use"),
        (r"\bhalte den greifer\b", "keep the gripper"),
        (r"\bbleib(?:e)? (?:uber|oberhalb)\b", "stay above"),
        (r"\bbleib(?:e)? (?:unter|unterhalb)\b", "stay below"),
        (r"\bbleib(?:e)?\b", "stay"),
        (r"\bhalte\b", "keep"),
        (r"\buber (?:den|die|das) (?=(?:obere[nmrs]?|untere[nmrs]?|mittlere[nmrs]?) (?:weg|route|korridor|gang|pfad))",
         "via the "),
        (r"\b(?:weg|route|korridor|gang|pfad)\b", "route"),
        *_DIRECTIONS_DE,
        (r"\b(?:rote[nmr]?) (?:ball|kugel)\b", "red ball"),
        (r"\b(?:grune[nmr]?) (?:ball|kugel)\b", "green ball"),
        (r"\bkugel\b", "ball"),
        (r"\bziel(?:punkt|markierung)?\b", "goal"),
        (r"\b(?:startpunkt|startposition|startfeld|anfang|ausgangspunkt|ausgangsposition)\b", "start"),
        (r"\b(?:zelle|feld)\b", "cell"),
        (r"\b(?:zeile|reihe)\b", "row"),
        (r"\bspalte\b", "column"),
        (r"\bmitte\b", "centre"),
        (r"\becke\b", "corner"),
        (r"\bhalfte\b", "half"),
        (r"\b(?:bereich|gebiet)\b", "area"),
        (r"\b(?:raum|zimmer)\b", "room"),
        (r"\bseite\b", "side"),
        (r"\b(?:viertel|quadranten?)\b", "quadrant"),
        (r"\b(?:uber|oberhalb)\b", "above"),
        (r"\b(?:unter|unterhalb)\b", "below"),
        (r"\bmindestens\b", "at least"),
        (r"\bhochstens\b", "at most"),
        (r"\bhoher als\b", "higher than"),
        (r"\b(?:niedriger|tiefer) als\b", "lower than"),
        (r"\b(?:niemals|nie)\b", "never"),
        (r"\bgreifer\b", "gripper"),
        (r"\bverbotene[nm]? zone\b", "forbidden zone"),
        (r"\bkiste\b", "box"),
        (r"\bwand\b", "wall"),
        (r"\bhindernis\b", "obstacle"),
        (r"\b(?:des labyrinths|im labyrinth)\b", "of the maze"),
        (r"\blabyrinths?\b", "maze"),
        (r"\btisch(?:es)?\b", "table"),
        (r"\b(?:zum|zur)\b", "to the"),
        (r"\b(?:in die|in den|in das|ins)\b", "to the"),
        (r"\bim\b", "in the"),
        (r"\bam\b", "at the"),
        (r"\b(?:zu|nach)\b", "to"),
        (r"\bund\b", "and"),
        (r"\baber\b", "but"),
        (r"\bdann\b", "then"),
        (r"\bbitte\b", "please"),
        (r"\bnicht\b", "not"),
        (r"\bdich\b", ""),
        (r"\b(?:der|die|das|den|dem|des|ein|eine|einen|einem)\b", "the"),
    ),
)

FRENCH = Language(
    name="French",
    cues=frozenset(
        """va vas allez aller la le les au aux du des balle boule ballon rouge coin case cellule ligne
        colonne gauche droite droit superieur inferieur superieure inferieure haut bas moitie milieu depart
        retourne reviens objectif cible arrivee evite evitant sans et puis mais ne pas reste dessus dessous
        pince touche atteins boite mur interdite chemin couloir par labyrinthe vers dans rends-toi
        dirige-toi jamais toi ton ta rangee""".split()
    ),
    phrases=(
        (r"\bs'il (?:te|vous) plait\b", "please"),
        (r"\bla ou tu as commence\b", "where you started"),
        (r"\b(?:ton |votre )?(?:point|position) de depart\b", "start"),
        (r"\bposition initiale\b", "start"),
        (r"\b(?:ne|n') ?(?:va|vas|allez) pas\b", "do not go"),
        (r"\bne pas aller\b", "do not go"),
        (r"\b(?:ne|n') ?(?:entre|rentre|entrez) pas\b", "do not enter"),
        (r"\bne (?:touche|touchez) pas\b", "do not touch"),
        (r"\bne (?:passe|traverse|passez|traversez) pas\b", "do not pass"),
        (r"\bne (?:descends|descendez|va|vas) jamais (?:en dessous|au-dessous|au dessous|sous)(?: de)?\b",
         "never go below"),
        (r"\bne (?:va|vas|allez) jamais\b", "never go"),
        (r"\ben evitant\b|\bevitant\b", "avoiding"),
        (r"\bevite[rz]?\b", "avoid"),
        (r"\b(?:reste|restez) (?:loin|a l'ecart) (?:de la|du|des|de l'|de)\b", "stay away from the"),
        (r"\b(?:reste|restez) (?:hors|en dehors) (?:de la|du|des|de l'|de)\b", "stay out of the"),
        (r"\bsans (?:entrer|passer|aller) (?:dans|par|sur)\b", "without entering"),
        (r"\bsans toucher\b", "without touching"),
        (r"\bsans traverser\b", "without crossing"),
        (r"\b(?:reste|restez) (?:au-dessus|au dessus) (?:de|du)\b", "stay above"),
        (r"\b(?:reste|restez) (?:en dessous|au-dessous|au dessous) (?:de|du)\b", "stay below"),
        (r"\b(?:au-dessus|au dessus) (?:de|du)\b|\bplus haut que\b", "above"),
        (r"\b(?:en dessous|au-dessous|au dessous) (?:de|du)\b|\bsous\b|\bplus bas que\b", "below"),
        (r"\bau moins\b", "at least"),
        (r"\bau plus\b", "at most"),
        (r"\b(?:va|vas|allez|aller|rends-toi|rendez-vous|dirige-toi|dirigez-vous|deplace-toi|deplacez-vous|avance)\b",
         "go"),
        (r"\b(?:retourne|reviens|retournez|revenez)\b", "return"),
        (r"\b(?:atteins|atteignez|atteindre)\b", "reach"),
        (r"\b(?:touche|touchez)\b", "touch"),
        (r"\b(?:prends|prenez|emprunte|empruntez)\b", "take"),
        (r"\b(?:suis|suivez)\b", "follow"),
        (r"\b(?:reste|restez)\b", "stay"),
        (r"\b(?:chemin|couloir|passage|route|voie) du haut\b", "top route"),
        (r"\b(?:chemin|couloir|passage|route|voie) du bas\b", "bottom route"),
        (r"\b(?:chemin|couloir|passage|route|voie) du milieu\b", "middle route"),
        (r"\b(?:chemin|couloir|voie)\b", "route"),
        (r"\b(?:balle|boule|ballon) rouge\b", "red ball"),
        (r"\b(?:balle|boule|ballon) verte?\b", "green ball"),
        (r"\b(?:le|au|du) but\b", "the goal"),
        (r"\b(?:objectif|cible|arrivee)\b", "goal"),
        (r"\bdepart\b|\bdebut\b", "start"),
        (r"\bcase\b(?=\s*[(\[0-9])", "cell"),
        (r"\bcellule\b", "cell"),
        (r"\b(?:ligne|rangee)\b", "row"),
        (r"\bcolonne\b", "column"),
        (r"\bcoin\b", "corner"),
        (r"\ben haut a droite\b", "top right"),
        (r"\ben haut a gauche\b", "top left"),
        (r"\ben bas a droite\b", "bottom right"),
        (r"\ben bas a gauche\b", "bottom left"),
        (r"\b(?:superieure?|haute?|en haut)\b", "top"),
        (r"\b(?:inferieure?|basse?|en bas)\b", "bottom"),
        (r"\bgauche\b", "left"),
        (r"\bdroite?\b", "right"),
        (r"\bmoitie\b", "half"),
        (r"\bcote\b", "side"),
        (r"\b(?:milieu|centre)\b", "centre"),
        (r"\bquart\b", "quadrant"),
        (r"\b(?:salle|piece)\b", "room"),
        (r"\bzone interdite\b", "forbidden zone"),
        (r"\bboite\b", "box"),
        (r"\bmur\b", "wall"),
        (r"\bpince\b", "gripper"),
        (r"\blabyrinthe\b", "maze"),
        (r"\ba la\b|\ba l'|\bau\b|\baux\b", "to the "),
        (r"\bdans (?:le|la|les|l')\b", "into the"),
        (r"\bdans\b", "into"),
        (r"\bvers\b", "towards"),
        (r"\bpar\b", "via"),
        (r"\bde la\b|\bdu\b|\bdes\b|\bde l'", "of the "),
        (r"\bde\b|\bd'", "of "),
        (r"\ble\b|\bla\b|\bles\b|\bl'", "the "),
        (r"\bet\b", "and"),
        (r"\b(?:puis|ensuite)\b", "then"),
        (r"\bmais\b", "but"),
        (r"\bpas\b", "not"),
        (r"\bjamais\b", "never"),
        (r"\ben\b", "in"),
        (r"\bou\b", "or"),
        (r"\b(?:tu|vous)\b", "you"),
        (r"\b(?:ton|ta|tes|votre|vos)\b", "your"),
        (r"\b(?:a|toi)\b", ""),
    ),
)

SPANISH = Language(
    name="Spanish",
    cues=frozenset(
        """ve vaya vayas ir anda dirigete muevete camina la el los las al del pelota bola roja esquina celda
        casilla fila columna izquierda izquierdo derecha derecho superior inferior arriba abajo mitad centro
        inicio salida partida vuelve regresa meta objetivo destino evita evitando sin y luego despues pero
        entres toques quedate mantente encima debajo pinza toca alcanza llega caja pared zona prohibida
        ruta camino pasillo por laberinto mesa hacia nunca donde empezaste""".split()
    ),
    phrases=(
        (r"\bpor favor\b", "please"),
        (r"\bdonde (?:empezaste|comenzaste|saliste)\b", "where you started"),
        (r"\b(?:punto de partida|posicion inicial|inicio|comienzo|salida|partida)\b", "start"),
        (r"\bno (?:vayas|vaya|ir)\b", "do not go"),
        (r"\bno (?:entres|entre)\b", "do not enter"),
        (r"\bno (?:toques|toque)\b", "do not touch"),
        (r"\bno (?:cruces|pases|cruce|pase)\b", "do not pass"),
        (r"\b(?:nunca|no) (?:bajes|baje) (?:por debajo )?de\b", "never go below"),
        (r"\bnunca\b", "never"),
        (r"\bevitando\b", "avoiding"),
        (r"\bevita(?:r)?\b", "avoid"),
        (r"\b(?:mantente|quedate|permanece) lejos (?:de la|del|de los|de las|de)\b|\balejate (?:de la|del|de)\b",
         "stay away from the"),
        (r"\b(?:mantente|quedate|permanece) fuera (?:de la|del|de los|de las|de)\b", "stay out of the"),
        (r"\bsin (?:entrar|pasar|ir) (?:en|por|a)\b", "without entering"),
        (r"\bsin tocar\b", "without touching"),
        (r"\bsin cruzar\b", "without crossing"),
        (r"\b(?:mantente|quedate|permanece|manten) por encima de\b", "stay above"),
        (r"\b(?:mantente|quedate|permanece|manten) por debajo de\b", "stay below"),
        (r"\bpor encima de\b|\bmas alto que\b", "above"),
        (r"\bpor debajo de\b|\bdebajo de\b|\bmas bajo que\b", "below"),
        (r"\b(?:al menos|como minimo)\b", "at least"),
        (r"\bcomo maximo\b", "at most"),
        (r"\b(?:ve|vaya|ir|anda|dirigete|muevete|camina|desplazate|avanza)\b", "go"),
        (r"\b(?:vuelve|regresa|retorna)\b", "return"),
        (r"\b(?:alcanza|llega)\b", "reach"),
        (r"\btoca\b", "touch"),
        (r"\b(?:toma|coge)\b", "take"),
        (r"\b(?:usa|utiliza)\b", "use"),
        (r"\bsigue\b", "follow"),
        (r"\b(?:mantente|quedate|permanece)\b", "stay"),
        (r"\b(?:ruta|camino|pasillo|corredor|pasaje) (?:de arriba|superior)\b", "top route"),
        (r"\b(?:ruta|camino|pasillo|corredor|pasaje) (?:de abajo|inferior)\b", "bottom route"),
        (r"\b(?:ruta|camino|pasillo|corredor|pasaje) (?:del medio|central)\b", "middle route"),
        (r"\b(?:ruta|camino|pasillo|corredor|pasaje)\b", "route"),
        (r"\b(?:pelota|bola) roja\b", "red ball"),
        (r"\b(?:pelota|bola) verde\b", "green ball"),
        (r"\b(?:meta|objetivo)\b", "goal"),
        (r"\bdestino\b", "destination"),
        (r"\b(?:celda|casilla)\b", "cell"),
        (r"\bfila\b", "row"),
        (r"\bcolumna\b", "column"),
        (r"\besquina\b", "corner"),
        (r"\b(?:superior|arriba)\b", "top"),
        (r"\b(?:inferior|abajo)\b", "bottom"),
        (r"\bizquierd[ao]s?\b", "left"),
        (r"\bderech[ao]s?\b", "right"),
        (r"\bmitad\b", "half"),
        (r"\blado\b", "side"),
        (r"\bcentro\b", "centre"),
        (r"\bcuadrante\b", "quadrant"),
        (r"\b(?:habitacion|sala|cuarto)\b", "room"),
        (r"\bzona prohibida\b", "forbidden zone"),
        (r"\bzona\b", "zone"),
        (r"\bcaja\b", "box"),
        (r"\b(?:pared|muro)\b", "wall"),
        (r"\bobstaculo\b", "obstacle"),
        (r"\bpinza\b", "gripper"),
        (r"\blaberinto\b", "maze"),
        (r"\bmesa\b", "table"),
        (r"\ba la\b|\bal\b|\ba los\b|\ba las\b", "to the"),
        (r"\bhacia\b", "towards"),
        (r"\bpor\b", "via"),
        (r"\bde la\b|\bdel\b|\bde los\b|\bde las\b", "of the"),
        (r"\bde\b", "of"),
        (r"\ben\b", "in"),
        (r"\b(?:el|la|los|las)\b", "the"),
        (r"\b(?:y|e)\b", "and"),
        (r"\b(?:luego|despues|entonces)\b", "then"),
        (r"\bpero\b", "but"),
        (r"\bno\b", "not"),
        (r"\bo\b", "or"),
        (r"\ba\b", "to"),
    ),
)

LANGUAGES: tuple[Language, ...] = (GERMAN, FRENCH, SPANISH)
MIN_LANGUAGE_CUES = 2
"""Distinct cue words of one language an instruction needs (more than any other language's, and more
than its known English words) before it is translated."""


# ----------------------------------------------------------------------------------------------------------
# Clean-up


@dataclass(frozen=True)
class CleanText:
    """An instruction ready for the rules, and how it was changed on the way (said back to the user)."""

    text: str
    notes: tuple[str, ...]


_WORD = re.compile(r"[a-z][a-z']*")


def plain(text: str) -> str:
    """Lowercase, compatibility forms folded (full-width digits), accents dropped, one kind of quote
    and dash."""
    text = unicodedata.normalize("NFKC", text).replace("ß", "ss")
    text = "".join(c for c in unicodedata.normalize("NFKD", text) if not unicodedata.combining(c))
    text = text.lower()
    for quote in "\u2018\u2019\u02bc`\u00b4":
        text = text.replace(quote, "'")
    for dash in "\u2010\u2011\u2012\u2013\u2014\u2212":
        text = text.replace(dash, "-")
    return re.sub(r"\s+", " ", text).strip()


def english_words(words: list[str]) -> int:
    return sum(word in FILLER_WORDS or word in TYPO_TARGETS for word in words)


def detect_language(text: str) -> Language | None:
    """The language an instruction is written in, when it is clearly one the rules translate."""
    words = _WORD.findall(text)
    english = english_words(words)
    scores = sorted(((len(set(words) & lang.cues), lang.name, lang) for lang in LANGUAGES), reverse=True)
    best, _, language = scores[0]
    if best >= MIN_LANGUAGE_CUES and best > scores[1][0] and best > english:
        return language
    return None


_KEY_ROWS = ("qwertyuiop", "asdfghjkl", "zxcvbnm")


def _key_neighbours() -> dict[str, frozenset[str]]:
    """Letters next to each letter on a QWERTY keyboard (same row, and the staggered rows above and below)."""
    neighbours: dict[str, set[str]] = {}
    for r, row in enumerate(_KEY_ROWS):
        for i, key in enumerate(row):
            near = {row[j] for j in (i - 1, i + 1) if 0 <= j < len(row)}
            if r > 0:
                near |= {_KEY_ROWS[r - 1][j] for j in (i, i + 1) if j < len(_KEY_ROWS[r - 1])}
            if r + 1 < len(_KEY_ROWS):
                near |= {_KEY_ROWS[r + 1][j] for j in (i - 1, i) if 0 <= j < len(_KEY_ROWS[r + 1])}
            neighbours[key] = near
    return {key: frozenset(near) for key, near in neighbours.items()}


KEY_NEIGHBOURS = _key_neighbours()


def _substitution(a: str, b: str) -> int:
    """A slip onto a neighbouring key is one edit; any other wrong letter counts as two (real words that
    differ by one letter, 'went'/'west', are not typos of each other)."""
    if a == b:
        return 0
    return 1 if b in KEY_NEIGHBOURS.get(a, frozenset()) else 2


def edit_distance(a: str, b: str, limit: int) -> int:
    """Edits from a to b (insertions, deletions, swaps of neighbours, key slips), capped at limit + 1."""
    if abs(len(a) - len(b)) > limit:
        return limit + 1
    previous2: list[int] = []
    previous = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        current = [i] + [0] * len(b)
        for j, cb in enumerate(b, 1):
            current[j] = min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + _substitution(ca, cb))
            if i > 1 and j > 1 and ca == b[j - 2] and a[i - 2] == cb:
                current[j] = min(current[j], previous2[j - 2] + 1)
        previous2, previous = previous, current
    return min(previous[-1], limit + 1)


LONG_WORD = 8
"""Words of this many letters may carry two typos; shorter ones one."""


def _typo_limit(word: str) -> int:
    return 2 if len(word) >= LONG_WORD else 1


_SUFFIXES = ("s", "es", "ed", "er", "ers", "ing")


def _inflected(word: str, candidate: str) -> bool:
    """'routes', 'routed', 'router' are other words than 'route', not typos of it ('headd' is one of 'head')."""
    forms = {candidate + suffix for suffix in _SUFFIXES}
    if candidate.endswith("e"):
        forms |= {candidate + "d", candidate + "r", candidate + "rs", candidate[:-1] + "ing"}
    return word in forms


def _comparable(word: str, candidate: str) -> bool:
    """Whether `candidate` may be what `word` misspells: same first letter; a 3-letter word only by a
    missing letter ('bal' -> 'ball') or two swapped letters ('rde' -> 'red')."""
    if candidate[0] != word[0] or _inflected(word, candidate):
        return False
    if len(word) == 3:
        return len(candidate) == 4 or (len(candidate) == 3 and sorted(candidate) == sorted(word))
    return True


def correct_word(word: str, known: frozenset[str]) -> str | None:
    """The one vocabulary word `word` is a misspelling of, or None (known, too short, or no single match).

    One edit (a swap of neighbours counts as one) for words shorter than LONG_WORD letters, two beyond."""
    if word in COMMON_TYPOS:
        return COMMON_TYPOS[word]
    if word in known or word in NOT_TYPOS or len(word) < 3 or not word.isalpha():
        return None
    limit = _typo_limit(word)
    best: list[str] = []
    best_distance = limit + 1
    for candidate in TYPO_TARGETS:
        if not _comparable(word, candidate):
            continue
        distance = edit_distance(word, candidate, limit)
        if distance < best_distance:
            best, best_distance = [candidate], distance
        elif distance == best_distance:
            best.append(candidate)
    return best[0] if len(best) == 1 and best_distance <= limit else None


def correct_typos(text: str, known: frozenset[str]) -> tuple[str, list[str]]:
    """Misspelt vocabulary words replaced; returns the text and one note per correction."""
    notes: list[str] = []

    def fix(match: re.Match[str]) -> str:
        word = match.group()
        fixed = correct_word(word, known)
        if fixed is None:
            return word
        notes.append(f"read {word!r} as {fixed!r}")
        return fixed

    return _WORD.sub(fix, text), notes


def _each_cell(match: re.Match[str]) -> str:
    """'cells (7, 8) and (3, 3)' -> 'cell (7, 8) and cell (3, 3)'."""
    return re.sub(r"([\[(]\s*\d+\s*,\s*\d+\s*[\])])", r"cell \1", match.group(1))


# Compass words and spellings folded into the parser's direction words.
_CANONICAL: tuple[tuple[str, Any], ...] = (
    (r"\bdon'?t\b|\bdo n't\b", "don't"),
    (r"\b(?:dont)\b", "don't"),
    (r"\b(north|south)-?(east|west)\b", r"\1 \2"),
    (r"\bcentre|\bcenter\b|\bcentral\b", "centre"),
    (r"\bcentres\b", "centre"),
    (r"\b(?:north|upper|northern|up(?=\s*-?\s*(?:left|right)\b))\b", "top"),
    (r"\blower\b(?!\s+than)", "bottom"),
    (r"\blowest\b", "bottom"),
    (r"\b(?:highest|uppermost)\b", "top"),
    (r"\b(?:south|southern)\b", "bottom"),
    (r"\b(?:east|eastern)\b", "right"),
    (r"\b(?:west|western)\b", "left"),
    (r"\b(left|right)[\s-]*hand(?:ed)?\b", r"\1"),
    (r"\b(top|bottom)[\s-]*(left|right)(?:most)?\b", r"\1-\2"),
    (r"\b(left|right)[\s-]+(top|bottom)\b(?=\s+corner)", r"\2-\1"),
    (r"\b(top|bottom|left|right)most\b", r"\1"),
    (r"\bne(?=\s+corner\b)", "top-right"),
    (r"\bnw(?=\s+corner\b)", "top-left"),
    (r"\bse(?=\s+corner\b)", "bottom-right"),
    (r"\bsw(?=\s+corner\b)", "bottom-left"),
    (r"\btoo\s+(?=the\b)", "to "),
    (r"\bmid\b", "middle"),
    (r"\bend[\s-]effector\b", "end-effector"),
    (r"\bmeters?\b|\bmetres?\b", "m"),
    (r"\bcentimeters?\b|\bcentimetres?\b", "cm"),
    (r"\bmillimeters?\b|\bmillimetres?\b", "mm"),
    (r"(\d),(\d+)\s*(m|cm|mm)\b", r"\1.\2 \3"),
    (r"\bhalf\s+a\s+m\b", "0.5 m"),
    (r"(\d)(m|cm|mm)\b", r"\1 \2"),
    # Cells written in other ways, made 'cell (row, col)' so that their comma stays inside brackets.
    (r"\b(?:(?:the\s+)?(?:cell|square|tile|field)\s+(?:in|at|on|of)\s+)?(?:the\s+)?row\s+(?:number\s+)?(\d+)\s*"
     r"(?:,|and|&)?\s*(?:in\s+|at\s+)?(?:the\s+)?(?:column|col)\s+(?:number\s+)?(\d+)\b", r"cell (\1, \2)"),
    (r"\b(?:(?:the\s+)?(?:cell|square|tile|field)\s+(?:in|at|on|of)\s+)?(?:the\s+)?(?:column|col)\s+(?:number\s+)?(\d+)"
     r"\s*(?:,|and|&)?\s*(?:in\s+|at\s+)?(?:the\s+)?row\s+(?:number\s+)?(\d+)\b", r"cell (\2, \1)"),
    (r"\br\s*(\d+)\s*,?\s*c\s*(\d+)\b", r"cell (\1, \2)"),
    (r"\b(cell|square|tile|field)\s+(?:at\s+|number\s+)?(\d+)\s*(?:,\s*|\s+)(\d+)\b", r"cell (\2, \3)"),
    (r"\b(?:square|tile|field)\s*(?=[\[(])", "cell "),
    (r"\b(?:cell|square|tile|field)\s*[\[(]\s*(cell\s*\(\d+, \d+\))\s*[\])]", r"\1"),
    (r"\b(?:cell|square|tile|field)\s+(?=cell\s*\()", ""),
    (r"\bx\s*[=:]?\s*(-?\d+(?:\.\d+)?)\s*(?:,|and)?\s*y\s*[=:]?\s*(-?\d+(?:\.\d+)?)"
     r"(?:\s*(?:,|and)?\s*z\s*[=:]?\s*(-?\d+(?:\.\d+)?))?", r"position (\1, \2, \3)"),
    (r", \)", ")"),
    (r"\bcells\s*((?:[\[(]\s*\d+\s*,\s*\d+\s*[\])]\s*(?:,|and|&|or)?\s*)+)", _each_cell),
    (r"\b(anywhere|anything|everywhere|somewhere|any\s+place|any\s+cell)\s+(?:but|except(?:\s+for)?|other\s+than|"
     r"apart\s+from|besides)\b", "anywhere-except"),
)


def canonical(text: str) -> str:
    for pattern, replacement in _CANONICAL:
        text = re.sub(pattern, replacement, text)
    return re.sub(r"\s+", " ", text).strip()


def clean(instruction: str, known: frozenset[str]) -> CleanText:
    """The instruction as the rules read it: plain, in English, typos of vocabulary words corrected,
    spellings canonical. `known`: every word the rules know (never 'corrected')."""
    text = plain(instruction)
    notes: list[str] = []
    language = detect_language(text)
    if language is not None:
        text = language.translate(text)
        notes.append(f"read as {language.name}: {text!r}")
    else:
        text, fixes = correct_typos(text, known)
        notes += fixes
    return CleanText(text=canonical(text), notes=tuple(notes))
