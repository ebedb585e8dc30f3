"""English texts for the synthetic posts: one post on one sub-theme of its topic.

Design: banks of concepts x synonyms x templates.

- Every sub-theme has a bank of *concepts* (what a post on it talks about: for horror films the
  monster, the setting, the fear it causes...), each a set of synonyms or paraphrases
  ("terrifying|creepy|eerie|bone-chilling"), and a dozen or so sentence *templates* whose slots
  (``{mood}``) are filled from those concepts. Templates also carry inline paraphrases,
  ``[made a string of saves|pulled off one fine stop after another]``, so that the words around the
  slots rotate as well.
- Every topic has a bank of its own, shared by its sub-themes. Some of its templates are plain
  ("The acting was {quality} across the board."); most use *role* slots that each sub-theme of
  the topic fills with its own words: the sport template "{person} {feat} as {contest} went down to
  the wire." reads "... scored twice as the derby ..." for football and "... served twenty aces as
  the semi-final ..." for tennis.
- A little generic filler ("Readers shared mixed reactions.") is shared by every topic.

A post is a random mix of sentences from the three banks, of a length typical of its topic: short
covid posts, first-person movie reviews, and news articles in paragraphs for the other topics.

Why: the hidden tastes of simulated users are over sub-themes, and the models downstream must find
them from text. Because the content of each sub-theme is spread over many rotating synonyms, two
posts on one sub-theme mean the same thing while sharing few exact words: a sentence-embedding
model, which reads meaning, groups them well, whereas a bag of words reduced to a few SVD components
sees mostly the frequent topic skeletons and separates sub-themes only partly. Invented names of
people, places, teams, firms and titles rotate too; they are made up so that no real person is
described. ``bench/text_separability.py`` measures both models on these texts.

All randomness comes from the caller's ``numpy.random.Generator``, so a seeded generator gives the
same texts. Uniform numbers are drawn from it in blocks (one call per post, seldom more) because
per-choice calls would dominate the run time.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from itertools import pairwise
from typing import NamedTuple

import numpy as np

__all__ = ["SUBTHEMES", "compose_text"]


class _Bank(NamedTuple):
    concepts: dict[str, str]  # slot name -> "variant|variant|..."; variants may hold slots too
    templates: tuple[str, ...]


class _Shape(NamedTuple):
    min_sentences: int
    max_sentences: int
    max_paragraphs: int
    subtheme_share: float  # chance that a sentence comes from the sub-theme bank
    filler_share: float  # chance that it is generic filler; the rest comes from the topic bank


# --------------------------------------------------------------------------------------------------
# Invented names and numbers, shared by all topics
# --------------------------------------------------------------------------------------------------

_FIRST_NAMES = (
    "Marta", "Jonas", "Priya", "Tomasz", "Elena", "Kwame", "Sofia", "Ravi", "Ingrid", "Mateo",
    "Leila", "Oskar", "Nadia", "Felix", "Amara", "Dmitri", "Hana", "Lucas", "Yara", "Bruno",
    "Greta", "Idris", "Carmen", "Soren", "Aiko", "Emeka", "Lotte", "Rafael", "Zainab", "Henrik",
)  # fmt: skip
_LAST_NAMES = (
    "Kellerby", "Antunovic", "Marchetti", "Oyelaran", "Vasquell", "Brandtner", "Halloway",
    "Ferreiro", "Nakamori", "Lindqvast", "Okonkwe", "Duvalle", "Pemberhale", "Szabrin",
    "Castellane", "Whitcombe", "Rautenberg", "Ilvesmoor", "Thorsby", "Quintanar", "Adeyomi",
    "Farrowdale", "Kovalenko", "Mirabeau", "Stenholt",
)  # fmt: skip


class _Draw:
    """Uniform choices fed from blocks of ``rng.random``."""

    __slots__ = ("_rng", "_block", "_next")
    _BLOCK = 96  # a post needs up to about 80, so one rng call per post

    def __init__(self, rng: np.random.Generator):
        self._rng = rng
        self._block: list[float] = []
        self._next = 0

    def uniform(self) -> float:
        if self._next == len(self._block):
            self._block = self._rng.random(self._BLOCK).tolist()
            self._next = 0
        self._next += 1
        return self._block[self._next - 1]

    def below(self, n: int) -> int:
        """A uniform integer in [0, n)."""
        return int(self.uniform() * n)

    def chance(self, p: float) -> bool:
        return self.uniform() < p

    def between(self, low: int, high: int) -> int:
        """A uniform integer in [low, high]."""
        return low + self.below(high - low + 1)


def _person(draw: _Draw) -> str:
    return f"{_FIRST_NAMES[draw.below(len(_FIRST_NAMES))]} {_LAST_NAMES[draw.below(len(_LAST_NAMES))]}"


def _ordinal(n: int) -> str:
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def _football_score(draw: _Draw) -> str:
    winner = draw.between(1, 5)
    return f"{winner}-{draw.below(winner)}"


def _basketball_score(draw: _Draw) -> str:
    winner = draw.between(92, 131)
    return f"{winner}-{winner - draw.between(1, 18)}"


# Slots computed rather than listed; available to every bank.
_GENERATED: dict[str, Callable[[_Draw], str]] = {
    "person": _person,
    "num": lambda d: str(d.between(2, 40)),
    "num_k": lambda d: f"{d.between(2, 95)},{d.below(10)}00",
    "pct": lambda d: f"{d.between(1, 35)}%",
    "money": lambda d: f"${d.between(4, 480)} million",
    "oil_price": lambda d: f"${d.between(55, 130)}",
    "price": lambda d: f"${d.between(2, 14)}99",
    "year": lambda d: str(d.between(1987, 2019)),
    "minute": lambda d: _ordinal(d.between(3, 90)),
    "football_score": _football_score,
    "basketball_score": _basketball_score,
}

# Slots listed as variants; available to every bank.
_SHARED_CONCEPTS = {
    "place": "Port Averly|Kesterbridge|Valmora|Northfield Bay|Lindenholm|San Aurelio|Brightwater|"
    "Okanda|Marrowgate|Esterhaven|Caldora|Fenwick Falls|Riverton Cross|Nova Lusa|Halden Vale|"
    "Ashcombe|Tarrin Heights|Westmere",
    "day": "Monday|Tuesday|Wednesday|Thursday|Friday|Saturday|Sunday",
}

# Generic filler, the same for every topic: noise that says nothing about the topic.
_FILLER = (
    "Readers shared mixed reactions.",
    "More details are expected later this week.",
    "The story was widely shared online.",
    "Comments under the post were divided.",
    "Opinions remain divided.",
    "It remains to be seen what happens next.",
    "Many people had been waiting for this.",
    "Not everyone is convinced, though.",
    "Time will tell.",
    "Some people were surprised, others not at all.",
    "The reaction online was swift.",
    "Plenty of people have an opinion on it.",
)

# --------------------------------------------------------------------------------------------------
# movie: first-person reviews. Roles: kind, mood, reaction, highlight, hook.
# --------------------------------------------------------------------------------------------------

_MOVIE = _Bank(
    concepts={
        "film": "{title_adj} {title_noun}|The {title_adj} {title_noun}|The {title_noun} of {place}|{title_noun}",
        "title_adj": "Silent|Last|Hollow|Endless|Broken|Golden|Distant|Quiet|Forgotten|Paper|Glass|"
        "Northern|Second|Velvet",
        "title_noun": "Harbor|Orchard|Signal|Lantern|Frontier|Garden|Tide|Winter|Mirror|Compass|"
        "Meadow|Crossing|Promise|Letters|Horizon|Bridge",
        "when": "last night|over the weekend|at the cinema on {day}|on a streaming service yesterday|"
        "at a late screening|with friends on {day}",
        "quality": "excellent|strong|solid|uneven|superb|convincing|a little wooden|top-notch",
        "verdict": "it is worth your time|I would happily watch it again|it is a solid film with a "
        "few flaws|I left the cinema satisfied|it is one of the better films this year|it did not "
        "quite live up to the hype",
        "score": "six|seven|eight|nine|five|seven and a half",
        "feeling": "satisfied|a bit confused|wanting more|speechless|thoughtful|slightly disappointed",
    },
    templates=(
        "{film} is {kind}, and [a {mood} one at that|a properly {mood} one|one of the more {mood} ones I have seen].",
        "I went in expecting {kind} and [got something truly {mood}|found it more {mood} than I "
        "imagined|came out thinking it was {mood}].",
        "[Special mention goes to|I have to single out|The standout for me was|Nothing beats] {highlight}.",
        "The director, {person}, handles {hook} with [real confidence|a sure hand|surprising care|great skill].",
        "{reaction}, and I was not the only one [in the cinema|in the room|in my row].",
        "It is {mood} from the opening scene to the final credits.",
        "My favourite part was {highlight}.",
        "The whole film rests on {hook}, and it [mostly works|pays off|holds up well].",
        "Few films this year are as {mood} as this one.",
        "I saw it on {day}, and {reaction}.",
        "I watched {film} {when}.",
        "The acting was {quality} across the board.",
        "{person} gives a {quality} performance in the lead role.",
        "At just under two hours, it never felt too long.",
        "I would give it {score} out of ten.",
        "Overall, {verdict}.",
        "The ending left me {feeling}.",
        "The script has a few weak moments in the middle.",
        "The cinema was packed for the {day} screening.",
        "I went with [a friend|my partner|my brother|a group from work] and we [argued about it "
        "afterwards|both enjoyed it|had different opinions].",
        "The [costumes|locations|sets] [are impressive|are well done|stand out].",
        "Some scenes drag a little, but the pacing [recovers|picks up] in the second half.",
        "The trailer [gives away too much|does not do it justice|is misleading].",
        "I got the largest popcorn and finished it before the halfway point.",
        "The cast includes {person} and {person}, both [on great form|very good|excellent].",
        "It is [a little|slightly|far] too long, but I was never bored.",
        "The supporting actors [do a lot of heavy lifting|deserve more screen time|are terrific].",
        "I have already recommended it to [two friends|my family|my colleagues].",
        "The final shot [stayed with me|is beautiful|felt a bit abrupt].",
        "I read the reviews afterwards and mostly agree with them.",
    ),
)

_MOVIE_SUBTHEMES = {
    "horror": _Bank(
        concepts={
            "kind": "a horror film|a fright flick|a scary movie|a chilling shocker|a creepy ghost "
            "story|a slasher|a supernatural thriller|a haunted-house tale|a creature feature",
            "mood": "terrifying|creepy|eerie|bone-chilling|unsettling|spine-tingling|nightmarish|"
            "spooky|hair-raising|menacing|sinister|frightening",
            "reaction": "I jumped out of my seat|I covered my eyes|my heart was pounding|"
            "I screamed out loud|I was shaking|I grabbed my friend's arm|"
            "goosebumps ran down my back|I gasped out loud|I hid behind my coat",
            "highlight": "the jump scares|the final chase through the dark|the scene in the "
            "cellar|the creature design|the screams echoing through the house|the last shot of the "
            "ghost|the seance sequence|the attic scene",
            "hook": "the haunting|the curse on the family|the killer stalking the town|the "
            "possession|the creature in the woods|the evil lurking in the house|the murders at the "
            "lake",
            "monster": "the ghost|the demon|the masked killer|the vengeful spirit|the creature in "
            "the basement|the possessed child|the thing lurking in the dark|the witch|the phantom|"
            "the undead bride|the shape in the fog",
            "setting": "an abandoned farmhouse|a haunted mansion|a fog-covered cemetery|a remote "
            "cabin in the woods|a crumbling asylum|an empty hospital at night|a derelict chapel|a "
            "boarded-up orphanage|an isolated lighthouse",
            "scares": "jump scares|frights|shocks|moments of pure dread|screams|chills",
            "darkness": "in the dark|at midnight|after sunset|in the shadows|with the lights off|late at night",
            "gore": "blood|gore|grisly violence|carnage|bloodshed|brutal killing",
        },
        templates=(
            "{film} is {kind} set in {setting}, and it is [genuinely|truly|seriously] {mood}.",
            "{reaction} when {monster} [finally appeared|showed itself|crept into view].",
            "The {scares} are [well timed|perfectly placed|earned] and [never cheap|never lazy|always effective].",
            "There is [a lot of|plenty of|no shortage of] {gore}, so [it is not for the "
            "faint-hearted|squeamish viewers should stay away|sensitive viewers beware].",
            "Watching it [alone|on my own|by myself] {darkness} was a mistake: [I barely slept "
            "afterwards|I left every light on at home|{reaction}].",
            "The [atmosphere|mood|tension] inside {setting} is {mood} from the first minute.",
            "{monster} is one of the most {mood} [villains|screen monsters|presences] I have seen in years.",
            "If you love {scares}, this is {kind} you should not miss.",
            "Even the quiet scenes feel {mood}, as if something is [hiding|waiting|watching] {darkness}.",
            "The final act turns into a desperate [fight for survival|struggle to escape|race to "
            "stay alive] against {monster}.",
            "The [sound design|score|music] makes every [creak|whisper|footstep|knock on the door] feel {mood}.",
            "{person} plays [a survivor|a young mother|a student|a priest] trapped in {setting} with {monster}.",
            "Halfway through, {reaction}.",
            "[Nobody|No one|Not a single character] is safe once {monster} [wakes up|is "
            "unleashed|comes out {darkness}].",
        ),
    ),
    "comedy": _Bank(
        concepts={
            "kind": "a comedy|a laugh-out-loud comedy|a silly romp|a witty farce|a light-hearted "
            "caper|a goofy buddy movie|a screwball comedy|a feel-good comedy",
            "mood": "hilarious|funny|witty|side-splitting|riotously silly|sharp and playful|"
            "absurdly amusing|gloriously daft|uproarious|cheeky",
            "reaction": "I laughed until I cried|the whole audience was roaring|I could not stop "
            "giggling|I was in stitches|people around me were howling with laughter|I chuckled "
            "from start to finish|my sides hurt from laughing|I snorted my drink",
            "highlight": "the running gag about the goat|the wedding speech scene|the car chase in "
            "a golf buggy|the karaoke scene|the improvised banter|the disastrous dinner party|the "
            "mix-up with the twins",
            "hook": "the botched robbery|the chaotic reunion|the mix-up at the hotel|the road trip "
            "from hell|the wedding that goes wrong|the fake identity scheme",
            "jokes": "the jokes|the gags|the one-liners|the punchlines|the comic bits|the wisecracks|the visual pranks",
            "timing": "comic timing|deadpan delivery|timing for a punchline|instinct for physical "
            "comedy|knack for slapstick",
            "mishap": "a disastrous wedding rehearsal|a road trip gone wrong|a botched bank "
            "robbery|a chaotic family reunion|a mix-up at a fancy hotel|a talent show that spirals "
            "out of control|a stag party that goes badly awry",
        },
        templates=(
            "{film} is {kind} about {mishap}, and it is {mood}.",
            "{reaction} during the first twenty minutes.",
            "Most of {jokes} land, and a few of them are {mood}.",
            "{person} has perfect {timing} and [steals every scene|runs away with the film|is a delight].",
            "Not every [joke|gag|bit] works, but {jokes} in the second half are {mood}.",
            "The plot about {mishap} is [absurd in the best possible way|ridiculous and "
            "wonderful|daft but irresistible].",
            "{reaction}, which rarely happens to me at the cinema.",
            "Some of {jokes} are a bit crude, but [it has a warm heart|the mood stays kind|the cast sells them].",
            "It is {mood}, [silly|daft|goofy] and surprisingly sweet.",
            "If you need [a good laugh|cheering up|a giggle] after a long week, this is {kind} worth seeing.",
            "The writers clearly had fun with {mishap}, and it shows.",
            "The supporting cast is {mood}, especially {person}, whose {timing} is spot on.",
            "By the time of the chase scene, {reaction}.",
            "[Even my grumpy uncle|Even my serious dad|Even the critic next to me] could not keep a straight face.",
        ),
    ),
    "romance": _Bank(
        concepts={
            "kind": "a romance|a love story|a romantic drama|a tender love story|a swoony romantic "
            "comedy|a heartfelt tale of two lovers|a weepie about first love|a story of devotion",
            "mood": "tender|heartfelt|touching|sweet|moving|achingly romantic|heartwarming|bittersweet|lovely|gentle",
            "reaction": "I cried|I needed tissues|my heart melted|I was a sobbing mess|"
            "I had a lump in my throat|I teared up|I was swooning|my eyes were wet",
            "highlight": "the first kiss|the wedding scene|the proposal|the long-awaited embrace|"
            "the farewell at the station|the confession of love|the reunion in the rain|the slow "
            "dance",
            "hook": "the love triangle|the long-distance relationship|the second chance at love|"
            "the whirlwind courtship|the forbidden affair|the unlikely pairing",
            "couple": "the two lovers|the couple|the star-crossed pair|the sweethearts|the young "
            "lovers|the pair of soulmates|the newlyweds",
            "fall": "fall in love|fall for each other|slowly fall head over heels|find their way "
            "to each other|lose their hearts to one another",
            "meet": "a rainy train platform|a tiny bookshop|a seaside bakery|a friend's wedding|a "
            "summer job at a vineyard|a snowed-in airport|a dance class",
            "chemistry": "chemistry|spark|connection|rapport|romantic tension|warmth",
            "love": "love|romance|true love|soulmates|happy endings|devotion",
        },
        templates=(
            "{film} is {kind} about two strangers who meet at {meet}.",
            "Watching {couple} {fall} over one summer was {mood}.",
            "The {chemistry} between {person} and {person} feels completely real.",
            "{reaction} during {highlight}.",
            "It is {mood} without ever becoming [too sugary|saccharine|sickly sweet].",
            "{highlight} is staged beautifully, and {reaction}.",
            "Anyone who has ever had their heart broken will recognise [these feelings|this longing|every moment].",
            "The story asks whether {couple} can stay together after years apart.",
            "It is the perfect pick for [a date night|Valentine's Day|an evening with your partner].",
            "I loved how slowly {couple} {fall}, without any rush.",
            "By the time of {highlight}, {reaction}.",
            "There is a jealous ex, a misunderstanding and a grand gesture, all the classic ingredients of {kind}.",
            "It made me believe in {love} again.",
            "[Every glance|Every letter|Every stolen moment] between {couple} carries so much feeling.",
        ),
    ),
    "science_fiction": _Bank(
        concepts={
            "kind": "a science fiction epic|a sci-fi adventure|a futuristic thriller|a space "
            "opera|a dystopian tale|a mind-bending sci-fi story|a story of the far future|a "
            "cosmic odyssey",
            "mood": "mind-bending|visionary|spectacular|ambitious|thought-provoking|awe-inspiring|"
            "dazzling|otherworldly|cerebral|epic",
            "reaction": "my mind was blown|I sat there in awe|I felt completely transported|I "
            "needed a minute to process it|my jaw dropped|I felt tiny in the face of the cosmos",
            "highlight": "the spaceship battle|the zero-gravity sequence|the first glimpse of the "
            "alien city|the time-loop twist|the robot uprising|the hyperspace jump",
            "hook": "the alien invasion|the time-travel paradox|the journey across the galaxy|the "
            "rebellion of the machines|the colony's fight for survival|the first contact",
            "future_place": "a distant planet|a starship drifting between galaxies|a colony on "
            "Mars|a flooded city in the year 2300|an orbiting space station|a world ruled by "
            "machines|a frozen moon",
            "future_tech": "time travel|artificial minds|interstellar travel|human cloning|"
            "teleportation|robots that dream|wormholes",
            "aliens": "the aliens|the extraterrestrial visitors|the android|the rogue robot|the "
            "mysterious beings from another galaxy|the cyborg|the visitors from the stars",
            "visuals": "visual effects|special effects|spaceship designs|futuristic sets|alien "
            "landscapes|holographic interfaces",
            "idea": "what it means to be human|whether machines can feel|where humanity is "
            "heading|what we would lose by leaving Earth|whether the past can ever be changed",
        },
        templates=(
            "{film} is {kind} set on {future_place}.",
            "The {visuals} are {mood}, especially in the opening shot.",
            "The story uses {future_tech} to ask {idea}.",
            "{aliens} are portrayed as neither friends nor enemies, which I found {mood}.",
            "I loved how the plot handles {future_tech} without drowning in [jargon|technobabble|exposition].",
            "Some of the science is shaky, but the ideas are {mood}.",
            "The [crew's journey|voyage|expedition] to {future_place} is tense and beautifully shot.",
            "It left me thinking about {idea} long after the credits.",
            "Anyone who loves stories about {future_tech} will find plenty to enjoy.",
            "The first contact scene with {aliens} is {mood}.",
            "{person} plays an astronaut who wakes up on {future_place} with no memory.",
            "The world-building is so detailed that {future_place} feels like a real place.",
            "It is {kind} with real brains behind the {visuals}.",
            "[The starship|The space station|The alien city] on screen looks {mood}.",
        ),
    ),
    "documentary": _Bank(
        concepts={
            "kind": "a documentary|a nonfiction film|a fly-on-the-wall documentary|an "
            "investigative documentary|a real-life portrait|a feature-length documentary|a "
            "factual film",
            "mood": "eye-opening|informative|illuminating|sobering|fascinating|insightful|"
            "revealing|enlightening|educational",
            "reaction": "I learned a lot|it taught me things I never knew|it changed how I see "
            "the issue|it opened my eyes|I came away better informed|it made me rethink what I "
            "believed",
            "highlight": "the archive footage|the interviews with survivors|the secretly filmed "
            "scenes|the hidden-camera sequences|the testimony of an old fisherman|the old "
            "newsreels",
            "hook": "the investigation|the real-life story|the years of filming|the hidden "
            "scandal it uncovers|the true events it records|the research behind it",
            "subject": "the collapse of a fishing village|a family of beekeepers|the hidden world "
            "of deep-sea creatures|a forgotten jazz pianist|the fight to save an ancient forest|an "
            "ageing circus troupe|the workers of a closing steel mill",
            "footage": "real footage|archive footage|interviews with the people involved|"
            "never-before-seen recordings|first-hand testimonies|old home videos",
            "filmmaker": "the filmmaker|the documentarian|the director behind the camera|the crew|the narrator",
            "facts": "the facts|the evidence|the research|the true story|the real events",
        },
        templates=(
            "{film} is {kind} about {subject}.",
            "It mixes {footage} with quiet observation, and the result is {mood}.",
            "{reaction}, even though I thought I knew the topic well.",
            "{filmmaker} spent years following the people involved, and it shows.",
            "The narration is calm and lets {facts} speak for themselves.",
            "Some scenes are hard to watch because they really happened.",
            "Watching {footage} on a big screen was powerful.",
            "It never feels like a lecture, yet {reaction}.",
            "{filmmaker} takes no sides and simply presents {facts}.",
            "I would recommend it to anyone curious about {subject}.",
            "It is {mood} and more gripping than most thrillers.",
            "By the end, {reaction}.",
            "The film is built on {footage}, which gives it honesty and weight.",
            "[Everything in it is true|None of it is staged|Every word of it is real], and that makes it {mood}.",
        ),
    ),
    "animation": _Bank(
        concepts={
            "kind": "an animated film|a cartoon|an animated adventure|a hand-drawn feature|a "
            "stop-motion film|a computer-animated family film|an animated musical",
            "mood": "gorgeous|charming|vibrant|whimsical|beautifully drawn|adorable|delightful|"
            "colourful|enchanting|playful",
            "reaction": "my kids giggled all the way through|the children in the audience "
            "cheered|my niece wants to watch it again|the little ones sat spellbound|my nephew has "
            "not stopped talking about it",
            "highlight": "the hand-drawn forest|the musical number|the talking fox|the chase "
            "across the rooftops|the colourful underwater scene|the lantern festival sequence",
            "hook": "the little robot's quest|the adventure of the lost penguin|the friendship "
            "between a dragon and a girl|the fairy-tale journey|the world of talking animals",
            "drawing": "the animation|the artwork|the hand-drawn visuals|the character designs|the "
            "colourful frames|the stop-motion puppets",
            "kids": "my kids|my children|my nephews|my niece|my little cousins|the whole family",
            "critter": "a talking fox|a brave little robot|a shy dragon|a lost penguin|a singing "
            "teapot|a clumsy baby elephant|a curious owl",
            "voices": "voice cast|voice acting|vocal work",
        },
        templates=(
            "{film} is {kind} about {critter} searching for its family.",
            "I could not take my eyes off {drawing}.",
            "{kids} loved it, and honestly so did I.",
            "The {voices} is full of energy, and {critter} is the star.",
            "Every frame looks {mood}, like a moving picture book.",
            "The songs are catchy, and {kids} were singing them all the way home.",
            "It is {mood} and full of gentle humour for all ages.",
            "The sidekick, {critter}, is so {mood} that I want a plush toy of it.",
            "The message about friendship is simple but lands for [young viewers|the under-tens|small children].",
            "Adults will catch jokes that go over the heads of {kids}.",
            "The animators clearly spent years on the tiny details of {drawing}.",
            "I took {kids} to see {kind} on {day}, and nobody was bored.",
            "I could not get over how {mood} {drawing} looked on a big screen.",
            "[Bring the kids|Take the little ones|Grab the family]: it is {kind} that works for everyone.",
        ),
    ),
}

# --------------------------------------------------------------------------------------------------
# covid: short social posts. Role: measure.
# --------------------------------------------------------------------------------------------------

_COVID = _Bank(
    concepts={
        "virus": "covid|the virus|the pandemic|coronavirus|COVID-19|this pandemic",
    },
    templates=(
        "Honestly, all anyone talks about now is {measure}.",
        "Health officials in {place} will give an update on {measure} tomorrow.",
        "Two years into {virus} and we are still arguing about {measure}.",
        "The government keeps changing its mind about {measure}.",
        "My whole family has opinions about {measure}.",
        "Stay safe, everyone.",
        "{virus} is far from over in {place}.",
        "We will get through this together.",
        "Thank you to every nurse and doctor working through {virus}.",
        "Wash your hands, people.",
        "Feels like this will never end.",
        "Another day, another update.",
        "Anyone else just tired of all this?",
        "Hoping next year is better.",
        "Sending love to everyone who has lost someone to {virus}.",
    ),
)

_COVID_SUBTHEMES = {
    "vaccines": _Bank(
        concepts={
            "measure": "the vaccine rollout|the jabs|the booster campaign|vaccination|getting "
            "vaccinated|the immunisation programme",
            "jab": "the vaccine|the jab|the shot|the booster|the inoculation|a dose",
            "clinic": "the vaccination centre|the pharmacy|the local clinic|a pop-up vaccine site|"
            "the sports hall turned into a jab centre|my GP surgery|the drive-in inoculation hub",
            "my_jab": "my second dose|my first injection|my top-up|my booster|my jab",
            "side_effect": "a sore arm|an aching shoulder|a mild fever|a tired afternoon|a slight "
            "headache|some chills overnight",
            "immunity": "immunity|protection|antibodies|defence against severe illness|resistance to the virus",
            "rollout": "the rollout|the vaccination campaign|the immunisation drive|the booster "
            "programme|the jab campaign|the inoculation effort",
        },
        templates=(
            "Just [got|had|received] {my_jab} at {clinic} and the staff were [lovely|brilliant|so kind].",
            "{rollout} in {place} has now reached {pct} of adults.",
            "Only {side_effect} after {my_jab}, [totally|absolutely|so] worth it for the {immunity}.",
            "Booked {my_jab} for {day}, [feeling relieved|finally|can't wait].",
            "The queue at {clinic} was long but moved quickly.",
            "{rollout} is speeding up, with {num_k} [doses|injections|shots] given yesterday.",
            "Please get {jab} if you are eligible, it really helps build {immunity}.",
            "[Scientists|Doctors|Researchers] say {jab} offers strong {immunity}.",
            "My [grandparents|parents|elderly neighbours] just had {jab} and I can finally hug them again.",
            "Anyone else feel wiped out the day after {jab}?",
            "Appointments for {jab} open to everyone over {num} from {day}.",
            "Had {side_effect} after {my_jab} at {clinic}, nothing serious.",
            "[Fully vaccinated|Double jabbed|Boosted] as of today, [thank you science|feeling grateful|what a relief].",
        ),
    ),
    "lockdowns": _Bank(
        concepts={
            "measure": "the lockdown|the stay-at-home rules|the curfew|being locked down|the shutdown|the closures",
            "lockdown": "the lockdown|the stay-at-home order|the shutdown|the curfew|the "
            "restrictions|the quarantine rules|the closure order|the circuit breaker",
            "at_home": "stuck at home|working from the kitchen table|home-schooling the kids|not "
            "leaving the flat|confined indoors|trapped inside|staring at the same four walls",
            "venues": "shops|pubs|gyms|schools|restaurants|cinemas|hairdressers|bars|theatres",
            "extension": "another three weeks|another month|at least two more weeks|the rest of "
            "the winter|another fortnight",
            "reopen": "reopen|open their doors again|welcome customers back|return to normal "
            "hours|be allowed to trade again",
            "isolation": "loneliness|cabin fever|boredom|isolation|restlessness|monotony",
        },
        templates=(
            "Day {num} of {lockdown} and I am still {at_home}.",
            "{lockdown} in {place} has been [extended|prolonged|stretched out] for {extension}.",
            "{venues} will stay [shut|closed] until {lockdown} is lifted.",
            "Can't wait for {venues} to {reopen}.",
            "Honestly the {isolation} is worse than the virus for me.",
            "Small businesses are struggling while {venues} remain closed.",
            "Another [evening|weekend|day] {at_home}.",
            "The government says {lockdown} could be [eased|relaxed|loosened] if things improve.",
            "Police are fining people who [break|ignore|flout] {lockdown}.",
            "Anyone else going a bit mad from {isolation}?",
            "{lockdown} starts at midnight, so everyone rushed to the supermarket.",
            "Week {num} {at_home}, and the {isolation} is getting to me.",
            "Haven't seen my friends in months because of {lockdown}.",
        ),
    ),
    "case_numbers": _Bank(
        concepts={
            "measure": "the case numbers|the infection figures|the daily count|the rising "
            "infections|the hospital figures|the statistics",
            "cases": "new cases|infections|positive results|confirmed diagnoses|people testing "
            "positive|fresh infections|recorded cases",
            "rising": "rising|climbing|surging|spiking|increasing|shooting up|soaring",
            "falling": "falling|dropping|declining|going down|easing|coming down",
            "hospital": "hospital admissions|ICU patients|people in intensive care|"
            "hospitalisations|patients on ventilators|patients on wards",
            "deaths": "deaths|fatalities|covid deaths|victims",
            "figures": "the daily figures|the latest statistics|today's numbers|the official data|"
            "the weekly report|the government dashboard|the health ministry's update",
            "wave": "a new wave|a second wave|another surge|a fresh outbreak|a winter peak|a spike",
        },
        templates=(
            "{figures} show {num_k} {cases} in {place}.",
            "{cases} are {rising} again, which is [worrying|scary|concerning].",
            "{hospital} in {place} have doubled this week.",
            "Good news: {cases} are finally {falling}.",
            "Experts fear {wave} as {cases} keep {rising}.",
            "{num_k} {cases} and {num} {deaths} reported today.",
            "The positivity rate is now {pct}, according to {figures}.",
            "Looking at {figures}, {wave} seems to be starting.",
            "The curve is finally flattening in {place}.",
            "{figures} are grim: {hospital} are up {pct} in a week.",
            "The reproduction number is back above one, and {cases} are {rising}.",
            "{deaths} are {falling} but {hospital} are still high.",
            "[Record|Another record|Highest ever] daily count in {place} today: {num_k}.",
        ),
    ),
    "masks_testing": _Bank(
        concepts={
            "measure": "masks|face coverings|testing|rapid tests|the mask rules|swabbing",
            "mask": "a mask|a face covering|a face mask|an N95|a cloth mask|a surgical mask|a visor",
            "masks": "masks|face coverings|face masks|mouth and nose coverings",
            "test": "a rapid test|a PCR|a lateral flow|a swab|a home kit|an antigen check|a nasal swab",
            "result": "came back negative|was negative|showed one line|came back positive|showed two lines|was clear",
            "indoors": "on the bus|in the supermarket|on the train|in class|at the office|in shops|on the underground",
            "sanitiser": "hand sanitiser|hand gel|disinfectant wipes|alcohol gel",
        },
        templates=(
            "Please wear {mask} {indoors}, it is not hard.",
            "[Took|Did|Used] {test} this morning and it {result}.",
            "Half the people {indoors} were not wearing {mask} today.",
            "Schools will hand out {test} to every pupil twice a week.",
            "The queue for {test} at the drive-through site was an hour long.",
            "Ran out of {sanitiser} again, stocking up tomorrow.",
            "Wearing {mask} all day at work fogs up my glasses.",
            "Did {test} before visiting my parents and it {result}.",
            "{masks} are now compulsory {indoors}.",
            "Does anyone know where to get {test} in {place}?",
            "[Testing sites|Swab centres|Test centres] in {place} are overwhelmed this week.",
            "Pharmacies have sold out of {masks} and {sanitiser}.",
            "My glasses steam up every time I put on {mask}.",
        ),
    ),
    "travel_rules": _Bank(
        concepts={
            "measure": "the travel rules|quarantine on arrival|the border closures|the red list|"
            "the travel bans|the entry requirements",
            "trip": "my holiday|our trip abroad|the family vacation|my flight home|our summer "
            "getaway|my business trip|our honeymoon|the ski trip",
            "borders": "the borders|border crossings|international flights|the frontiers|ports of entry",
            "quarantine": "hotel quarantine|ten days of quarantine on arrival|mandatory isolation "
            "after landing|a stay in a quarantine hotel|two weeks of self-isolation",
            "documents": "a negative test before flying|a vaccine passport|a health declaration "
            "form|proof of vaccination|a passenger locator form|a travel certificate",
            "airport": "the airport|the departure gate|passport control|the check-in desk|the "
            "arrivals hall|immigration",
            "cancelled": "cancelled|called off|postponed|scrapped",
            "red_list": "the red list|the banned countries list|the high-risk list|the travel ban list|the amber list",
        },
        templates=(
            "{trip} has been {cancelled} again because of the new rules.",
            "You now need {documents} to enter {place}.",
            "{place} has been added to {red_list}, so {quarantine} is required.",
            "Stuck at {airport} for hours because nobody understood the paperwork.",
            "Airlines are struggling as {borders} stay closed.",
            "Finally allowed to fly again without {quarantine}.",
            "Paid a fortune for {quarantine} after my flight.",
            "Does {place} still require {documents}?",
            "Tourism in {place} has collapsed since {borders} closed.",
            "Checking the rules before {trip} is a full-time job.",
            "The government will reopen {borders} to vaccinated visitors next month.",
            "They turned people away at {airport} for not having {documents}.",
            "Flights to {place} [are suspended|have been grounded|are off] until further notice.",
        ),
    ),
}

# --------------------------------------------------------------------------------------------------
# business: news articles. Roles: sector, players, deal, metric.
# --------------------------------------------------------------------------------------------------

_BUSINESS = _Bank(
    concepts={
        "firm": "Veltrix|Norhaven Holdings|Quillon Group|Brightpath|Kelmar Industries|Lumora|"
        "Tavistock & Reyes|Corvane|Auralis|Pexmont|Sundale|Harrowgate Partners|Ostrel Group|"
        "Benmore Capital",
    },
    templates=(
        "[Analysts|Economists|Commentators] said {sector} [remains fragile|faces a tough year|is under pressure].",
        "{person}, chief executive of {firm}, called {deal} a turning point.",
        "The news comes as {players} grow more cautious.",
        "Investors will be watching {sector} closely.",
        "Economists expect {metric} to stabilise later this year.",
        "{firm} said {deal} would be discussed in its next quarterly report.",
        "{players} in {place} are bracing for a difficult year.",
        "The latest figures for {metric} surprised economists.",
        "{deal} is the biggest talking point in {sector} this month.",
        "The company employs about {num_k} people worldwide.",
        "Business leaders urged the government to cut red tape.",
        "{firm} declined to comment further.",
        "Revenue rose {pct} compared with the same period last year.",
        "The company's headquarters are in {place}.",
    ),
)

_BUSINESS_SUBTHEMES = {
    "stock_markets": _Bank(
        concepts={
            "sector": "the stock market|the trading floor|the City|the bourse|global exchanges|"
            "the investment world|share dealing",
            "players": "traders|investors|fund managers|brokers|shareholders|speculators|hedge "
            "funds|portfolio managers",
            "deal": "the sell-off|the rally|the slump in share prices|the rout|"
            "the surge in equities|the bull run|the crash on {day}",
            "metric": "share prices|stock valuations|trading volumes|price-to-earnings ratios|company valuations",
            "index": "the main index|the benchmark|the blue-chip gauge|the bourse|the exchange|"
            "the headline average|the market",
            "rose": "rallied|climbed|surged|jumped|gained ground|advanced|soared",
            "fell": "slumped|tumbled|slid|dropped sharply|fell|retreated|plunged",
            "stocks": "shares|stocks|equities|securities",
            "yields": "bond yields|treasury yields|government debt costs|gilt yields",
            "mood": "a sell-off|a rally|volatility|market jitters|a bull run|a correction|turbulence|panic selling",
        },
        templates=(
            "{index} {rose} {pct} on {day} as {players} [cheered strong earnings|welcomed upbeat "
            "results|bet on lower rates].",
            "{stocks} in {firm} {fell} after [the results missed forecasts|profits disappointed|a profit warning].",
            "{players} braced for {mood} ahead of the [central bank decision|jobs report|inflation data].",
            "{yields} moved higher, weighing on [technology|growth|property] {stocks}.",
            "It was the worst [week|month|session] for {index} since {year}.",
            "{players} said {mood} could [continue for several sessions|last into next month|deepen].",
            "[Trading was heavy|Volumes were high|Activity was frantic] as {stocks} changed hands at a record pace.",
            "[Oil and mining|Defence|Pharmaceutical] {stocks} led the gains, while "
            "[utilities|retailers|carmakers] lagged.",
            "{index} closed at a record high for the third [day|session] in a row.",
            "Market strategist {person} warned that {stocks} look [expensive|overvalued|stretched].",
            "[Dividends and buybacks|Share repurchases|Payouts to shareholders] kept {players} interested.",
            "Futures pointed to a weaker open after {index} {fell} overnight.",
            "[Bears|Short sellers|Pessimists] made money as {index} {fell}.",
            "[Bulls|Optimists|Buyers] returned after {mood} last week.",
        ),
    ),
    "startups": _Bank(
        concepts={
            "sector": "the startup scene|the entrepreneurial ecosystem|the founder community|"
            "the innovation economy|the world of new businesses|the tech hub",
            "players": "founders|entrepreneurs|venture capitalists|angel investors|incubators|"
            "business angels|company builders",
            "deal": "the funding round|the cash injection|the capital raise|the Series A|"
            "the fundraise|the investment from backers|the seed deal",
            "metric": "startup valuations|venture funding|early-stage investment|money for new firms|deal flow",
            "startup": "the startup|the fledgling firm|the upstart|the two-year-old business|"
            "the newcomer|the scale-up|the company",
            "raise": "a funding round|a seed round|a Series A|a cash injection|a capital raise|a Series B",
            "backers": "venture capitalists|angel investors|backers|seed investors|"
            "a group of business angels|a tech investment firm|private investors",
            "founders": "the founders|its co-founders|the founding team|the entrepreneurs behind it|its creators",
            "valuation": "valuation|market value|price tag",
            "unicorn": "a unicorn|a billion-dollar company|one of the region's most valuable firms|a household name",
            "birthplace": "a garage|a university dorm|a shared co-working space|a kitchen table|a "
            "small incubator|a spare bedroom",
            "prototype": "pitch|prototype|app|platform|business plan|demo",
        },
        templates=(
            "{firm} raised {money} in {raise} led by {backers}.",
            "{founders} started the business in {birthplace} in {place} only [three years ago|two "
            "years ago|last year].",
            "The deal gives {startup} a {valuation} of {money}.",
            "{backers} are betting that {startup} can become {unicorn}.",
            "{person}, who co-founded {firm}, said the cash will fund [hiring and expansion|new "
            "offices abroad|product development].",
            "The {prototype} impressed {backers} at a [demo day|pitch event|showcase] in {place}.",
            "Like many young companies, {startup} is not yet profitable.",
            "{startup} plans to double its headcount after {raise}.",
            "[The incubator programme|The accelerator|The university spin-out scheme] in {place} "
            "has produced several promising ventures.",
            "{founders} said they had been rejected by dozens of {backers} before this.",
            "Early-stage investing has cooled, making {raise} a rare win.",
            "{startup} hopes to become {unicorn} within two years.",
            "[Burning through cash|Running low on money|Short of runway], {startup} had to act fast.",
            "The [first-time|serial|twenty-something] founders [dropped out of university|quit their "
            "corporate jobs|left big tech firms] to build it.",
        ),
    ),
    "energy": _Bank(
        concepts={
            "sector": "the power industry|oil and gas|utilities|the fuel business|the drilling industry|the grid",
            "players": "energy suppliers|power companies|oil producers|utilities|grid operators|drillers|refiners",
            "deal": "the price cap|the output cut|the supply contract|the wind farm deal|"
            "the reactor project|the pipeline agreement",
            "metric": "the cost of heating|the cost of crude|wholesale gas|electricity tariffs|pump costs",
            "crude": "oil|crude|Brent crude|petroleum",
            "power": "electricity|power|energy",
            "renewables": "wind farms|solar parks|green projects|offshore turbines|solar arrays|"
            "clean energy schemes|hydroelectric dams",
            "bills": "household energy bills|utility bills|heating costs|power prices|gas and electricity charges",
            "gas": "natural gas|gas supplies|liquefied natural gas|gas imports",
            "utility": "the utility|the energy supplier|the power company|the grid operator|the electricity firm",
            "plant": "pipeline|refinery|drilling project|power plant|nuclear reactor|gas terminal",
        },
        templates=(
            "{crude} prices rose to {oil_price} a barrel after [producers cut output|supply fell|a refinery fire].",
            "{utility} will build new {renewables} [off the coast of|near|outside] {place}.",
            "{bills} are expected to climb again this winter.",
            "Shortages of {gas} pushed wholesale {power} prices to a record.",
            "{firm} announced a {money} investment in {renewables}.",
            "The new {plant} will supply {place} for decades.",
            "Families struggling with {bills} will receive government support.",
            "Analysts say the shift to clean {power} is accelerating.",
            "Oil-producing nations agreed to pump more {crude}.",
            "{utility} warned of blackouts if demand keeps rising.",
            "[Carbon emissions|Greenhouse gas output|Pollution] from the sector fell {pct} last year.",
            "Investment in {renewables} now exceeds spending on [fossil fuels|coal and oil|drilling].",
            "[A cold snap|A heatwave|A windless week] sent demand for {power} soaring.",
            "The [petrol station|forecourt|pump] price of fuel hit a new high.",
        ),
    ),
    "retail": _Bank(
        concepts={
            "sector": "the high street|the shopping industry|shopkeeping|the retail sector|"
            "the bricks-and-mortar trade|the consumer economy",
            "players": "retailers|shopkeepers|chains|supermarket bosses|shop owners|department stores",
            "deal": "the holiday trading update|the store closure plan|the discount campaign|the "
            "Black Friday sales|the clearance sale|the loyalty scheme",
            "metric": "consumer spending|shop takings|footfall figures|basket sizes|the number of shoppers",
            "shops": "shops|stores|high street chains|outlets|supermarkets|boutiques",
            "shoppers": "shoppers|consumers|customers|bargain hunters",
            "sales": "sales|footfall|spending|takings",
            "online": "online shopping|e-commerce|internet orders|home delivery",
            "discounts": "discounts|promotions|markdowns|clearance sales|price cuts",
            "malls": "shopping centres|malls|retail parks|the high street",
            "season": "the holiday season|Black Friday|the Christmas rush|the back-to-school period|the January sales",
        },
        templates=(
            "{shoppers} spent {pct} more during {season} than last year.",
            "{firm} will close {num} {shops} as {shoppers} switch to {online}.",
            "Heavy {discounts} failed to lift {sales} at {malls} in {place}.",
            "The chain's {sales} fell for the third month in a row.",
            "{online} now accounts for a quarter of all purchases.",
            "Empty units are a growing problem for {malls}.",
            "{shoppers} are cutting back on [clothes and electronics|treats|furniture] as prices rise.",
            "The [fashion brand|clothing label|homeware chain] hopes {discounts} will clear unsold "
            "stock before spring.",
            "[Warehouse staff|Seasonal workers|Delivery drivers] were hired to cope with demand during {season}.",
            "[Retail analyst|Consumer expert|Shopping analyst] {person} said {shops} must give "
            "{shoppers} a reason to visit.",
            "[Loyalty cards|Self-checkout tills|Click-and-collect counters] are being rolled out across its {shops}.",
            "Grocery {sales} held up better than non-food items.",
            "[Queues formed|Crowds gathered|Doors opened early] outside {shops} for {season}.",
            "[Shoplifting|Theft from stores] has risen sharply, the trade body said.",
        ),
    ),
    "banking": _Bank(
        concepts={
            "sector": "the banking sector|the lending industry|the financial system|"
            "the world of finance|the credit markets|the savings industry",
            "players": "lenders|bankers|financiers|mortgage providers|building societies|credit unions",
            "deal": "the rate rise|the base-rate decision|the new capital rules|"
            "the rescue of a troubled institution|the merger of two building societies|"
            "the stress test results",
            "metric": "mortgage costs|interest rates|loan defaults|the cost of credit|savings returns",
            "bank": "the bank|the lender|the banking group|the building society|the high-street bank",
            "loans": "mortgages|loans|credit|home loans|lending",
            "rates": "interest rates|borrowing costs|lending rates|rates|the cost of borrowing",
            "central_bank": "the central bank|the monetary authority|rate-setters|policymakers at the central bank",
            "savers": "savers|depositors|account holders",
            "branches": "branches|high-street branches|local offices|cash machines",
            "watchdog": "regulators|the financial watchdog|supervisors|the banking authority",
        },
        templates=(
            "{central_bank} raised {rates} by a quarter of a percentage point.",
            "{bank} reported higher profits thanks to rising {rates}.",
            "{savers} will finally earn more on their [deposits|savings|accounts].",
            "{bank} will close {num} {branches} as customers move to mobile apps.",
            "Demand for {loans} slowed as {rates} climbed.",
            "{watchdog} fined {bank} {money} over failures in its [anti-money-laundering checks|"
            "fraud controls|complaints handling].",
            "Bad debts rose as more households fell behind on repayments.",
            "{central_bank} signalled that {rates} may stay high for longer.",
            "{watchdog} ordered lenders to hold more capital against risky {loans}.",
            "The lender's chief executive, {person}, said the balance sheet is strong.",
            "First-time buyers are finding {loans} harder to get.",
            "Customers complained after {bank}'s app went down on payday.",
            "[Overdraft fees|Account charges|Card fees] will rise from next month.",
            "[A run on deposits|A rush of withdrawals|Panic among savers] forced {bank} to seek help.",
        ),
    ),
}

# --------------------------------------------------------------------------------------------------
# sport: news articles. Roles: contest, arena, role, feat, competition.
# --------------------------------------------------------------------------------------------------

_SPORT = _Bank(
    concepts={
        "team": "{place} {mascot}|{place} {mascot}|{mascot} of {place}",
        "mascot": "Falcons|Rovers|United|Comets|Harriers|Wolves|Mariners|Stags|Rangers|Thunder|Athletic|Lions",
    },
    templates=(
        "{person} {feat} as {contest} went down to the wire.",
        "The atmosphere at {arena} was electric throughout {contest}.",
        "The {role} {person} was named the star of {contest}.",
        "After {contest}, {person} said the hard work in training had paid off.",
        "Pundits are already tipping {person} for {competition}.",
        "{person}, who {feat}, is now the favourite for {competition}.",
        "Fans celebrated late into the night after {contest}.",
        "Tickets for {contest} sold out within hours.",
        "The injury could keep the {role} out for several weeks.",
        "Few expected the {role} to challenge for {competition} this year.",
        "Training resumes on {day} ahead of another busy week.",
        "Sponsors and fans alike will be pleased with the result.",
        "It was a disappointing day for the defending champions.",
    ),
)

_SPORT_SUBTHEMES = {
    "football": _Bank(
        concepts={
            "contest": "the match|the derby|the fixture|the clash|the ninety minutes|the game at the weekend",
            "arena": "the stadium|the ground|the home stadium|the terraces",
            "role": "striker|midfielder|winger|captain|centre-back|goalkeeper",
            "feat": "scored twice|netted a hat-trick|struck a late winner|headed in the "
            "equaliser|curled in a free kick|kept a clean sheet",
            "competition": "the title|the golden boot|promotion|the trophy|silverware",
            "goal": "goal|strike|header|finish|volley|penalty",
            "scored": "scored|netted|fired home|slotted in|headed in",
            "keeper": "the goalkeeper|the keeper|the shot-stopper|the man between the posts",
            "referee": "the referee|the match official|the video review|the linesman",
            "league": "the league|the top flight|the premier division|the cup",
            "position": "striker|midfielder|winger|centre-back|forward",
        },
        templates=(
            "{team} beat {team} {football_score} in {league} on {day}.",
            "{person} {scored} the winning {goal} in the {minute} minute.",
            "{keeper} [made a string of superb saves|pulled off one fine stop after another|"
            "denied the visitors again and again] to [keep a clean sheet|protect the lead|secure "
            "the points].",
            "{referee} ruled out a late equaliser for offside, sparking [protests|fury|anger in the stands].",
            "The {position} has now found the net in five straight games.",
            "{team} sit top of {league} after {num} wins in a row.",
            "A stunning {goal} from [outside the box|thirty yards|a tight angle] settled the [derby|contest|tie].",
            "The [manager|head coach|boss] made three [substitutions|changes] at [half-time|the break|the interval].",
            "[Rain|A downpour|Snow] left the pitch heavy, and both sides struggled to pass the ball.",
            "The transfer window opens next month, and {team} want a new {position}.",
            "[Supporters|The home crowd|The travelling fans] sang for ninety minutes.",
            "{person} was shown a red card for a reckless [tackle|challenge|lunge].",
            "[A corner|A long throw|A free kick] caused chaos in the box before {person} {scored}.",
            "The [visitors|hosts|away side] were reduced to ten men before the break.",
        ),
    ),
    "tennis": _Bank(
        concepts={
            "contest": "the final|the semi-final|the five-set epic|the quarter-final|"
            "the second-round encounter|the showdown",
            "arena": "centre court|the tennis club|the main showcourt|the grass courts",
            "role": "tennis star|top seed|defending champion|qualifier|world number one",
            "feat": "served twenty aces|saved four match points|won in straight sets|broke serve "
            "three times|hit a stunning backhand winner on match point",
            "competition": "the grand slam title|the year-end rankings|the tour finals|a first major trophy",
            "set": "set|tie-break",
            "stroke": "serve|forehand|backhand|volleying|return of serve|drop shot|slice",
            "court": "the clay court|the grass court|centre court|the hard court",
            "winners": "aces|winners|clean winners|service winners",
            "errors": "unforced errors|double faults|missed returns|loose forehands",
            "tournament": "the {place} Open|the {place} Masters|the grand slam event|the tournament in {place}",
            "rallies": "rallies|baseline exchanges|points|exchanges from the back of the court",
            "clutch": "broke serve|saved three break points|converted match point|held her nerve",
        },
        templates=(
            "{person} beat {person} in straight sets to reach the final of {tournament}.",
            "Her {stroke} was unstoppable, producing {num} {winners}.",
            "The match lasted over three hours on {court}.",
            "{person} {clutch} in the decisive {set}.",
            "[Gruelling|Marathon|Breathless] {rallies} had the crowd on its feet.",
            "Too many {errors} cost the defending champion.",
            "The world number {num} next faces a qualifier.",
            "She dropped her racket and fell to the ground after the final point.",
            "The seeded player retired with a [wrist|shoulder|knee] injury in the second {set}.",
            "Playing on {court} suits his powerful {stroke}.",
            "{person} will rise into the top ten of the rankings after this run at {tournament}.",
            "A disputed line call in the third {set} sparked a heated exchange with the umpire.",
            "[Wind|Heat|Rain delays] made serving difficult for both players.",
            "The [doubles pair|mixed doubles team] lifted the trophy without dropping a {set}.",
        ),
    ),
    "motor_racing": _Bank(
        concepts={
            "contest": "the grand prix|the race|the rally|the sprint|the time trial|the endurance event",
            "arena": "the circuit|the race track|the speedway|the pit lane",
            "role": "driver|rookie|racer|team leader|pilot",
            "feat": "overtook three rivals on the last lap|set the fastest lap|converted pole "
            "position into victory|survived a late spin|made a daring pass into the final corner",
            "competition": "the drivers' championship|the constructors' title|the world "
            "championship|the season's crown",
            "pit_stop": "pit stop|tyre change|stop in the pits",
            "pole": "pole position|the front of the grid|first place on the grid",
            "lap": "lap|circuit|tour of the track",
            "overtook": "overtook|passed|swept past|dived inside",
            "crash": "crash|collision|spin|engine failure|puncture",
            "car": "car|machine|single-seater|racer",
            "racing_team": "Veloce|Arrowline|Kestrel|Marquette|Thundrell",
        },
        templates=(
            "{person} won {contest} in {place} after starting from {pole}.",
            "A slow {pit_stop} cost {person} the lead with ten laps to go.",
            "{person} {overtook} his teammate on the final {lap}.",
            "A {crash} on lap {num} brought out the safety car.",
            "The {racing_team} team struggled with [tyre wear|overheating brakes|poor grip] all weekend.",
            "Qualifying was held in heavy rain, and {person} took {pole}.",
            "The [engineers|mechanics|technicians] found more speed in the {car} overnight.",
            "{person} set the fastest {lap} of the weekend.",
            "The drivers' standings are now led by {person} by {num} points.",
            "[Fuel strategy|Tyre choice|Timing of the stops] decided {contest}.",
            "The rookie finished on the podium in only his third start.",
            "A late {crash} ended {person}'s hopes of a podium.",
            "[Sparks flew|Smoke poured|Debris scattered] as two cars touched at the first corner.",
            "The [chequered flag|finish line] came just in time for the leader, whose {car} was failing.",
        ),
    ),
    "basketball": _Bank(
        concepts={
            "contest": "the contest|the playoff opener|the showdown|the tip-off clash|game seven|the overtime thriller",
            "arena": "the arena|the court|the sold-out arena|the home court",
            "role": "point guard|centre|power forward|rookie|sixth man|big man",
            "feat": "scored 40 points|hit the game-winning three|grabbed twenty rebounds|recorded "
            "a triple-double|dunked over two defenders",
            "competition": "the championship ring|the conference title|the MVP award|the finals",
            "shot": "three-pointer|jump shot|slam dunk|layup|buzzer-beater|free throw|fadeaway",
            "court": "the court|the hardwood|the paint",
            "playoffs": "the playoffs|the postseason|the conference finals|the finals series",
            "position": "point guard|centre|power forward|shooting guard|small forward",
        },
        templates=(
            "{team} beat {team} {basketball_score} thanks to a late {shot}.",
            "{person} finished with {num} points, {num} rebounds and {num} assists.",
            "The {position} hit a {shot} at the buzzer to force overtime.",
            "{team} are now two wins away from {playoffs}.",
            "Dominating {court}, the {position} collected a career-high total.",
            "The home crowd roared as {person} threw down a {shot}.",
            "Shooting from [beyond the arc|long range|deep] was poor for both teams.",
            "{team} will face the top seed in {playoffs}.",
            "The rookie {position} was drafted first overall last summer.",
            "A timeout with {num} seconds left allowed the coach to draw up a final play.",
            "{person} sank every {shot} in the fourth quarter.",
            "Fouls piled up in the third quarter and two starters fouled out.",
            "[A fast break|A steal at half court|A blocked shot] swung the momentum late on.",
            "The [seven-footer|big man|veteran guard] controlled the boards all night.",
        ),
    ),
    "athletics": _Bank(
        concepts={
            "contest": "the final|the race|the heat|the marathon|the meet|the sprint final",
            "arena": "the athletics stadium|the track|the Olympic stadium|the indoor arena",
            "role": "sprinter|runner|hurdler|long jumper|distance runner",
            "feat": "broke the national record|won the sprint by a stride|cleared a personal best|"
            "ran a blistering final lap|anchored the team to victory",
            "competition": "the Olympic gold|the world title|a medal at the Games|the diamond league trophy",
            "event": "the 100 metres|the marathon|the high jump|the 400 metres hurdles|the "
            "javelin|the pole vault|the long jump",
            "record": "world record|national record|personal best|championship record|season's best",
            "medal": "gold|silver|bronze|a medal",
            "games": "the Olympics|the Olympic Games|the world championships|the athletics championships",
            "athlete": "sprinter|runner|hurdler|jumper|thrower|athlete",
            "finish": "crossed the line|broke the tape|dipped at the finish|cleared the bar",
        },
        templates=(
            "{person} won {medal} in {event} at {games}.",
            "The {athlete} set a new {record} in {event}.",
            "{person} {finish} just ahead of the defending champion.",
            "It was the first {record} in {event} for a decade.",
            "Qualifying for {games} begins next summer in {place}.",
            "The {athlete} has trained at altitude for months to prepare.",
            "[Anti-doping officials|Drug testers] tested every finalist after the race.",
            "A crowd of {num_k} watched inside the stadium.",
            "{person} collapsed with exhaustion after winning {event}.",
            "The relay team dropped the baton on the final changeover.",
            "Her coach said she is ready to challenge for {medal} at {games}.",
            "[Photo finish cameras|Timing officials] were needed to separate the top three.",
            "A false start led to the disqualification of the [favourite|world champion|home hope].",
            "[A headwind|A tailwind|The wet track] affected times in the sprints.",
        ),
    ),
}

# --------------------------------------------------------------------------------------------------
# politics: news articles. Roles: actors, pol_event, issue.
# --------------------------------------------------------------------------------------------------

_POLITICS = _Bank(
    concepts={
        "party": "Progress|Unity|Civic Alliance|Green Future|National Renewal|Liberal Forum",
    },
    templates=(
        "The opposition criticised the government's handling of {issue}.",
        "{person}, a senior minister, said {pol_event} showed the country was changing.",
        "Critics say the government misjudged {issue}.",
        "The {party} party said {actors} deserved better.",
        "Political analysts expect {issue} to dominate the autumn.",
        "The cabinet discussed {pol_event} in an emergency session.",
        "{actors} in {place} are watching closely.",
        "A government spokesperson said {issue} was under review.",
        "Officials declined to comment on the details.",
        "Opinion remains split across the country.",
        "The prime minister is expected to speak on {day}.",
        "{person} of the {party} party said the government had failed.",
    ),
)

_POLITICS_SUBTHEMES = {
    "elections": _Bank(
        concepts={
            "actors": "voters|the electorate|campaigners|pollsters|citizens|constituents",
            "pol_event": "the election|the vote|polling day|the ballot|the leadership contest|the count",
            "issue": "the campaign|the result|the recount|the debates|the turnout|the race for office",
            "voters": "voters|the electorate|citizens|constituents",
            "campaign": "the campaign|the race|the electoral contest|the campaign trail",
            "candidate": "candidate|contender|challenger|nominee",
            "polls": "opinion polls|surveys|the latest polling|exit polls",
            "turnout": "turnout|participation|the number of people voting",
            "won": "won|secured|clinched",
        },
        templates=(
            "{voters} in {place} head to the polls on {day}.",
            "{polls} put {person} {num} points ahead of her nearest rival.",
            "The {candidate} spent the final day of {campaign} shaking hands in {place}.",
            "{turnout} was the highest in twenty years.",
            "Postal ballots are still being counted in [several districts|a handful of constituencies|three regions].",
            "The {candidate} conceded defeat [late on election night|in the early hours|after the count].",
            "{person} {won} a narrow majority after a recount.",
            "The televised debate turned bitter as each {candidate} attacked the other's record.",
            "Polling stations opened at seven in the morning.",
            "Both sides spent record sums on advertising during {campaign}.",
            "{voters} said the cost of living was their main concern.",
            "Early results suggest a swing towards the {party} party, according to {polls}.",
            "[Canvassers|Volunteers|Activists] knocked on thousands of doors in the final week.",
            "The [incumbent|sitting president|outgoing leader] is trailing in [key districts|the suburbs|swing seats].",
        ),
    ),
    "diplomacy": _Bank(
        concepts={
            "actors": "diplomats|envoys|foreign ministers|negotiators|ambassadors",
            "pol_event": "the summit|the negotiations|the state visit|the treaty signing|"
            "the ministerial meeting|the envoy's trip",
            "issue": "the diplomatic row|relations with {country}|the territorial quarrel|"
            "the peace process|the sanctions regime|the standoff with {country}",
            "country": "Valdoria|Kestrania|Marenthia|Dranvik|Elbaria|Norvale|Caspenia|Tirvell",
            "talks": "a summit|talks|negotiations|a peace conference|a round of talks",
            "talks_noun": "summit|talks|negotiations|peace conference|round of talks",
            "diplomat": "the foreign minister|the ambassador|the envoy|the top diplomat|a special representative",
            "treaty": "a treaty|an accord|a pact|an agreement|a deal",
            "nations": "the two countries|the neighbouring states|the rival nations|both governments",
            "sanctions": "sanctions|trade restrictions|an embargo|tariffs",
            "ties": "relations|ties|diplomatic contacts",
        },
        templates=(
            "Leaders of {country} and {country} met for {talks} in {place}.",
            "The two sides signed {treaty} to end [a long border dispute|decades of hostility|a "
            "bitter quarrel over fishing rights].",
            "{diplomat} flew to {country} to ease tensions.",
            "{country} expelled three diplomats after a spying row.",
            "{ties} between {nations} have improved since the last {talks_noun}.",
            "The United Nations urged restraint.",
            "{country} threatened to impose {sanctions} unless troops are withdrawn.",
            "Behind closed doors, {diplomat} pushed for a ceasefire.",
            "The embassy in {place} was temporarily closed.",
            "Both delegations described the {talks_noun} as constructive.",
            "A joint statement promised closer cooperation on trade and security.",
            "Observers say {treaty} between {nations} could reshape the region.",
            "[Interpreters|Aides|Security staff] worked through the night as the talks dragged on.",
            "{diplomat} [shook hands with|dined with|welcomed] the visiting delegation.",
        ),
    ),
    "legislation": _Bank(
        concepts={
            "actors": "lawmakers|MPs|legislators|senators|parliamentarians",
            "pol_event": "the parliamentary debate|the second reading|the committee hearing|"
            "the late-night division|the final vote",
            "issue": "the new statute|the proposed changes|the overhaul|the draft act|the legal reforms",
            "bill": "the bill|the draft law|the legislation|the measure|the act|the reform package",
            "lawmakers": "lawmakers|MPs|legislators|members of parliament|senators",
            "passed": "passed|approved|voted through|adopted",
            "stage": "its second reading|a final vote|committee stage|a late-night vote",
            "amendments": "amendments|changes|revisions|clauses",
            "chamber": "the chamber|the lower house|the upper house|the assembly|the senate",
            "policy": "housing standards|data privacy|minimum wages|animal welfare|school funding|online safety",
        },
        templates=(
            "{lawmakers} {passed} {bill} on {policy} by {num}0 votes to {num}.",
            "{bill} now moves to {chamber} for {stage}.",
            "Opposition {lawmakers} tabled dozens of {amendments}.",
            "The new rules on {policy} will come into force next year.",
            "{chamber} rejected {bill} after a heated debate.",
            "Drafting {bill} took almost two years of consultation.",
            "Several {amendments} were added to win over wavering {lawmakers}.",
            "Once signed, {bill} will overhaul rules on {policy}.",
            "Legal experts warned that parts of {bill} may be challenged in court.",
            "The minister responsible, {person}, said {bill} was long overdue.",
            "{lawmakers} debated until midnight before {stage}.",
            "The statute will be reviewed after five years.",
            "[A filibuster|Procedural delays|A row over the wording] held up {bill} for weeks.",
            "The [speaker|clerk|committee chair] read out the result to a packed chamber.",
        ),
    ),
    "protests": _Bank(
        concepts={
            "actors": "protesters|demonstrators|activists|marchers|strikers",
            "pol_event": "the march|the demonstrations|the rally|the walkout|the general strike|the sit-in",
            "issue": "the protest movement|the unrest|the crackdown|the marchers' demands|"
            "the street violence|the civil disobedience",
            "protesters": "protesters|demonstrators|marchers|activists|campaigners",
            "march": "march|rally|demonstration|sit-in|walkout",
            "police": "police|riot officers|security forces|officers",
            "banners": "banners|placards|flags|signs",
            "chanted": "chanted|shouted|sang",
            "square": "in the main square|in the city centre|outside parliament|along the central boulevard",
            "cause": "climate action|higher wages|lower fuel prices|an end to corruption|housing rights",
            "arrested": "arrested|detained|held",
        },
        templates=(
            "Thousands of {protesters} gathered {square} in {place} demanding {cause}.",
            "{police} used tear gas to disperse the {march}.",
            "{protesters} carried {banners} and {chanted} slogans.",
            "Organisers said the {march} was peaceful.",
            "{num} people were {arrested} after clashes with {police}.",
            "A general strike is planned for next week.",
            "The {march} blocked traffic for several hours.",
            "Students joined the {march}, calling for {cause}.",
            "{protesters} vowed to return every weekend until their demands are met.",
            "Shopkeepers boarded up windows ahead of the {march}.",
            "Videos of {police} pushing {protesters} spread online.",
            "Union leader {person} addressed the crowd from a makeshift stage.",
            "[Water cannon|Rubber bullets|Pepper spray] was used as the crowd surged forward.",
            "[Drums|Whistles|Megaphones] echoed through the streets as the column moved on.",
        ),
    ),
    "local_government": _Bank(
        concepts={
            "actors": "councillors|residents|town officials|ratepayers|neighbourhood groups|community leaders",
            "pol_event": "the council meeting|the budget vote|the planning hearing|the mayor's address|"
            "the public consultation|the ward surgery",
            "issue": "the town budget|the pothole problem|the closure of libraries|"
            "the parking scheme|affordable housing|the bin collection service",
            "council": "the city council|the municipal authority|councillors|the borough|the town hall|"
            "the local authority",
            "mayor": "the mayor|the council leader|the deputy mayor",
            "services": "bin collections|street lighting|public libraries|parks|bus routes|road repairs",
            "budget": "budget|spending plan|council tax|local rates",
            "potholes": "potholes|broken pavements|crumbling roads|blocked drains",
            "residents": "residents|local people|neighbours|ratepayers|householders",
            "planning": "planning permission|zoning approval|approval from the planning committee",
        },
        templates=(
            "In {place}, {council} voted to cut funding for {services}.",
            "{residents} have complained about {potholes} on their street for months.",
            "{mayor} promised to fix {potholes} before winter.",
            "The annual {budget} was approved despite objections.",
            "A new cycle lane was granted {planning} after a public consultation.",
            "{residents} [packed the town hall|crowded into the chamber|filled the community "
            "centre] to oppose [the plan|the proposals|the scheme].",
            "Council tax will rise {pct} from April.",
            "{services} will be reduced to save money.",
            "{mayor} of {place} unveiled [a plan|proposals|a scheme] for [affordable housing|a new "
            "swimming pool|a bigger car park].",
            "The ward councillor's seat is up for grabs in May.",
            "Volunteers from the neighbourhood cleaned up the riverside park.",
            "{council} says {services} will return to normal next week.",
            "[Parking charges|Bus fares|Allotment fees] in the town centre will go up.",
            "A [petition|letter|campaign] signed by {num_k} locals demands a new playground.",
        ),
    ),
}

# --------------------------------------------------------------------------------------------------
# tech: news articles. Roles: news_item, field, tech_users.
# --------------------------------------------------------------------------------------------------

_TECH = _Bank(
    concepts={
        "firm": "Novalink|Syntera|Qubix|Orbitech|Helionet|Vantacore|Pixelmoor|Cyrano Labs|"
        "Stratus Nine|Lumenforge|Kairo Systems|Brightbyte",
    },
    templates=(
        "{news_item} was the main talking point at {firm}'s annual event.",
        "Tech analysts said {news_item} would change the industry.",
        "{firm} has invested heavily in {field} over the past decade.",
        "Industry watchers expect rivals in {field} to respond quickly.",
        "{person}, a technology analyst, said {news_item} was a sign of things to come.",
        "Engineers at {firm} have spent months working on {field}.",
        "{tech_users} in {place} will be the first to notice the change.",
        "Regulators are paying closer attention to {field}.",
        "The company said more details will follow next month.",
        "Privacy campaigners have raised concerns.",
        "{firm} employs {num_k} engineers around the world.",
        "The technology is still at an early stage.",
    ),
)

_TECH_SUBTHEMES = {
    "smartphones": _Bank(
        concepts={
            "news_item": "the new handset|the flagship|the foldable|the latest smartphone|the new device|"
            "the new model with three lenses",
            "field": "smartphones|handheld devices|phone design|consumer gadgets|personal electronics",
            "tech_users": "phone owners|gadget buyers|early adopters|people upgrading their devices",
            "phone": "phone|smartphone|handset|mobile|device",
            "camera": "camera|lens system|photo sensor|main camera|triple-lens array",
            "battery": "battery life|battery|power cell|long-lasting battery",
            "screen": "screen|display|foldable display|OLED panel",
            "model": "flagship|budget|foldable|premium|mid-range",
            "apps": "apps|software|games and tools",
        },
        templates=(
            "{firm} unveiled its new {model} {phone} with a larger {screen}.",
            "The {camera} is the main selling point, especially in low light.",
            "Reviewers praised the {battery}, which lasts a full day.",
            "The {phone} goes on sale on {day} for {price}.",
            "A new operating system update adds longer support for the {phone}.",
            "Global {phone} shipments fell {pct} last quarter.",
            "The {screen} folds in half and fits in a pocket.",
            "Users reported that the {phone} overheats while charging.",
            "Its {camera} can zoom up to {num} times.",
            "The new {phone} drops the headphone jack and adds wireless charging.",
            "Carriers will offer the {model} {phone} on monthly contracts.",
            "Developers are rushing to update their {apps} for the larger {screen}.",
            "[A cracked glass back|Fragile hinges|Scratched lenses] led to complaints from early buyers.",
            "[Face unlock|The fingerprint reader|Satellite texting] works even in poor light.",
        ),
    ),
    "artificial_intelligence": _Bank(
        concepts={
            "news_item": "the chatbot|the language model|the digital assistant|the new algorithm|"
            "the talking software|the reasoning engine",
            "field": "artificial intelligence|machine learning|automation|neural networks|"
            "smart software|computer reasoning",
            "tech_users": "data scientists|office workers using assistants|researchers|developers building bots",
            "ai": "AI|machine intelligence|deep learning|smart algorithms",
            "ai_system": "language model|chatbot|assistant|algorithm|neural network|bot",
            "trained": "trained on|built from|taught using",
            "corpus": "huge datasets|billions of web pages|vast amounts of text|millions of images",
            "automate": "automate|take over|transform|replace",
            "tasks": "jobs|office roles|customer service roles|routine tasks|clerical tasks",
            "skill": "reason|write code|answer questions|translate languages|generate images",
        },
        templates=(
            "{firm} released a new {ai_system} that can {skill}.",
            "The {ai_system} was {trained} {corpus}.",
            "Researchers warn that {ai} could {automate} many {tasks}.",
            "Regulators are drafting rules to make {ai} systems safer.",
            "Critics say the {ai_system} still makes up facts.",
            "{firm} builds {ai} tools for hospitals.",
            "Training the {ai_system} required thousands of powerful chips.",
            "Teachers worry students will use the {ai_system} to write essays.",
            "The company says its {ai_system} can now {skill} better than before.",
            "Advances in {ai} have sparked a race between big tech firms.",
            "Experts called for more transparency in how the {ai_system} makes decisions.",
            "Data centres running {ai} use enormous amounts of electricity.",
            "[Artists|Writers|Musicians] say their work was used without permission to train it.",
            "The system [beat human experts|passed a medical exam|solved a maths olympiad problem] in a recent test.",
        ),
    ),
    "cybersecurity": _Bank(
        concepts={
            "news_item": "the breach|the ransomware incident|the emergency patch|the hacking campaign|"
            "the leaked logins|the intrusion",
            "field": "cybersecurity|data protection|network defence|privacy protection|anti-malware tools",
            "tech_users": "IT teams|system administrators|network engineers|online banking customers",
            "hack": "cyberattack|hack|breach|ransomware attack|intrusion",
            "hackers": "hackers|cybercriminals|attackers|a criminal gang|state-backed hackers",
            "stolen_data": "personal details|customer records|passwords|email addresses|"
            "credit card numbers|home addresses",
            "flaw": "vulnerability|flaw|software bug|loophole|weakness",
            "patch": "patch|update|fix",
            "ransom": "a ransom|a payment in cryptocurrency|millions in bitcoin",
            "phishing": "phishing emails|fake login pages|scam messages|malicious links",
        },
        templates=(
            "{firm} confirmed a {hack} that exposed the {stolen_data} of {num_k} customers.",
            "{hackers} demanded {ransom} to restore the systems.",
            "A {flaw} in popular software left millions of devices exposed.",
            "Users are urged to install the latest {patch} immediately.",
            "{hackers} sent {phishing} to staff to steal their logins.",
            "Hospitals in {place} were hit by the {hack}, delaying operations.",
            "Investigators believe {hackers} were behind the attack.",
            "Experts advise changing passwords and turning on two-factor authentication.",
            "The {flaw} was discovered by an independent researcher, {person}.",
            "Stolen {stolen_data} appeared for sale on the dark web.",
            "The company has hired [a forensics firm|outside investigators|a specialist firm] to "
            "investigate the {hack}.",
            "Watch out for {phishing} pretending to be from your bank.",
            "[Encrypted files|Locked screens|Frozen servers] greeted staff when they arrived.",
            "The [malware|virus|spyware] spread through an infected email attachment.",
        ),
    ),
    "space": _Bank(
        concepts={
            "news_item": "the rocket launch|the lunar landing|the new telescope|the Mars rover|"
            "the crewed flight|the comet probe",
            "field": "space exploration|spaceflight|rocketry|astronomy|satellite technology|planetary science",
            "tech_users": "astronomers|space scientists|satellite operators|mission planners",
            "rocket": "rocket|launcher|booster|spacecraft",
            "launched": "launched|lifted off|blasted off",
            "mission": "mission|expedition|voyage",
            "astronauts": "astronauts|crew members|space travellers",
            "destination": "the Moon|Mars|the lunar surface|an asteroid|Jupiter's moons",
            "station": "the space station|the orbiting laboratory|the orbital outpost",
            "probe": "telescope|observatory|probe|rover|satellite",
            "control": "the space agency|mission control|flight controllers",
        },
        templates=(
            "The {rocket} {launched} from {place} carrying four {astronauts}.",
            "The {mission} to {destination} is scheduled for next year.",
            "A new {probe} captured images of distant galaxies.",
            "The {astronauts} will spend six months aboard {station}.",
            "{control} confirmed the {rocket} reached orbit safely.",
            "The reusable {rocket} landed upright on a barge at sea.",
            "Scientists hope the {probe} will find signs of water on {destination}.",
            "{firm} wants to send tourists on a {mission} around {destination}.",
            "The countdown was halted ten seconds before launch because of a sensor fault.",
            "{control} lost contact with the {probe} for several hours.",
            "The {mission} will test technology needed to land humans on {destination}.",
            "Spectators gathered on the beaches to watch the {rocket} rise into the sky.",
            "[A spacewalk|An experiment in zero gravity|A docking manoeuvre] went smoothly.",
            "[Solar panels|The heat shield|The landing legs] deployed as planned.",
        ),
    ),
    "video_games": _Bank(
        concepts={
            "news_item": "the new console|the launch of {game_title}|the blockbuster sequel|"
            "the esports final|the handheld|the remastered classic",
            "field": "gaming|interactive entertainment|the games business|console gaming|game design",
            "tech_users": "gamers|players|streamers|game fans",
            "game_title": "Ashen Realms|Starfall Tactics|Hollow Crown III|Neon Drift|Emberfall|"
            "Tides of Varn|Pixel Knights",
            "studio": "studio|developer|publisher",
            "players": "gamers|players|fans|streamers",
            "console": "console|handheld|gaming PC|next-gen console",
            "genre": "open-world adventure|shooter|role-playing game|puzzle game|battle royale|platformer",
            "online_mode": "multiplayer|online play|co-op play|split-screen play",
            "esports": "esports|competitive gaming|tournament",
        },
        templates=(
            "The {studio} released {game_title}, a long-awaited {genre}.",
            "{players} queued overnight to buy the new {console}.",
            "Servers for {online_mode} crashed on launch day because of heavy demand.",
            "{game_title} sold {num} million copies in its first week.",
            "Critics praised the {genre}'s huge map and gripping story.",
            "The {studio} apologised for bugs and promised a patch.",
            "A prize pool of {money} is on offer at the {esports} final.",
            "Top {players} streamed {game_title} to millions of viewers.",
            "The {console} will cost {price} at launch.",
            "{players} criticised the in-game purchases and loot boxes.",
            "Speedrunners have already finished {game_title} in under an hour.",
            "The sequel adds {online_mode} so friends can play together.",
            "[Boss fights|Side quests|Crafting systems] have been reworked after fan feedback.",
            "The [controller|joystick|gamepad] now vibrates with every footstep.",
        ),
    ),
}

# --------------------------------------------------------------------------------------------------
# entertainment: news articles. Roles: work, artist_role, audience, field.
# --------------------------------------------------------------------------------------------------

_ENTERTAINMENT = _Bank(
    concepts={},
    templates=(
        "{audience} flooded social media with reactions to {work}.",
        "The {artist_role} {person} thanked {audience} for their support.",
        "Insiders say more news about {work} is coming soon.",
        "It has been a remarkable year for {field}.",
        "{work} was the talk of the week in {place}.",
        "Critics and {audience} seem to agree about {work} for once.",
        "The announcement about {work} came as a surprise.",
        "The {artist_role} is one of the busiest names in {field}.",
        "The news was confirmed by a spokesperson on {day}.",
        "Tickets are expected to sell out quickly.",
        "Entertainment reporters had been speculating for weeks.",
    ),
)

_ENTERTAINMENT_SUBTHEMES = {
    "music": _Bank(
        concepts={
            "work": "the new album|the single|the comeback|the world tour|the summer hit|the latest release",
            "artist_role": "singer|musician|songwriter|rapper|pop star|performer",
            "audience": "fans|listeners|concertgoers|followers|audiences",
            "field": "pop|the music business|the charts|live performance|the recording industry",
            "song": "song|single|track|ballad|anthem",
            "album": "album|record|LP|EP",
            "band": "The Velvet Harbours|Neon Orchard|Paper Lanterns|Midnight Foxes|The Lowtides|Glass Canyon",
            "singer": "singer|vocalist|rapper|songwriter|frontwoman",
            "charts": "the charts|the streaming charts|the singles chart|the radio playlists",
            "tour": "tour|world tour|concert series|run of gigs",
            "gig": "concert|gig|show",
        },
        templates=(
            "{band} released a new {album} on {day}.",
            "The {singer} {person} topped {charts} with a catchy {song}.",
            "The {song} has been streamed {num} million times.",
            "{band} announced a {tour} across {num} cities.",
            "Fans sang every word at the sold-out {gig} in {place}.",
            "The {album} mixes folk guitars with electronic beats.",
            "Her voice soared on the closing {song}.",
            "The {singer} wrote the lyrics after a painful breakup.",
            "The guitarist left {band} after ten years.",
            "Critics called the {album} the band's most personal work.",
            "A surprise duet with {person} closed the {gig}.",
            "The {tour} kicks off in {place} in the spring.",
            "[The drummer|The bassist|The keyboard player] joined the line-up last year.",
            "[Vinyl pressings|Signed copies|Limited editions] of the {album} sold out in minutes.",
        ),
    ),
    "celebrities": _Bank(
        concepts={
            "work": "the wedding|the new romance|the red-carpet look|the high-profile split|the engagement|the breakup",
            "artist_role": "star|influencer|socialite|A-lister|heartthrob|personality",
            "audience": "followers|fans|onlookers|audiences|admirers",
            "field": "celebrity culture|the tabloids|showbiz|the society pages|the celebrity world",
            "celeb": "the star|the actress|the reality TV personality|the influencer|the A-lister|the heartthrob",
            "relationship": "engagement|wedding|divorce|split|new romance",
            "photographers": "photographers|paparazzi|the press pack|onlookers",
            "red_carpet": "the red carpet|the gala|the awards party|the charity ball",
            "outfit": "gown|outfit|designer dress|tuxedo|sparkling jumpsuit",
            "rumours": "rumours|whispers|tabloid reports|reports",
            "social": "social media|Instagram|TikTok|her fan pages",
        },
        templates=(
            "{celeb} {person} confirmed her {relationship} on {social}.",
            "{photographers} followed the couple through the airport.",
            "She dazzled on {red_carpet} in a {outfit}.",
            "{rumours} of a secret {relationship} have swirled for months.",
            "The couple married in a private ceremony on an island.",
            "{celeb} hit back at {rumours} about her private life.",
            "Her {outfit} from {red_carpet} went viral overnight.",
            "The actor's representatives declined to comment on the {relationship}.",
            "The pair were spotted holding hands in {place}.",
            "{celeb} shared photos from a lavish birthday party.",
            "Fans speculated about the {relationship} after a cryptic post on {social}.",
            "{celeb} has millions of followers on {social}.",
            "[A diamond ring|A new tattoo|A luxury villa] caught the eye of gossip columnists.",
            "The [bodyguard|publicist|stylist] was seen leaving the hotel at dawn.",
        ),
    ),
    "television": _Bank(
        concepts={
            "work": "the new series|the finale|the drama's return|the reality contest|"
            "the sitcom revival|the latest episode",
            "artist_role": "actor|presenter|showrunner|screenwriter|talk-show host|performer",
            "audience": "viewers|audiences|binge-watchers|fans|people at home",
            "field": "television|streaming|broadcasting|prime time|the small screen",
            "series": "series|show|drama|sitcom|miniseries",
            "episode": "episode|finale|pilot|season premiere",
            "network": "the network|the broadcaster|the streaming service|the channel",
            "viewers": "viewers|audiences|binge-watchers|the audience at home",
            "ratings": "ratings|viewing figures|audience numbers",
            "renewed": "renewed|cancelled|picked up",
            "show_title": "Harbour Lights|The Quiet Hours|Kingsbridge Road|Northern Line|Saltmarsh|The Long Table",
        },
        templates=(
            "{network} has {renewed} {show_title} for [another season|a further run|more episodes].",
            "The {episode} of {show_title} drew {num} million {viewers}.",
            "{viewers} were left shocked by the twist in the {episode}.",
            "The {series} topped the weekly {ratings}.",
            "{person} will join the cast as a detective in [the next season|the new run|future episodes].",
            "Critics praised the writing and the cliffhanger in the {episode}.",
            "The {series} will be available to stream from {day}.",
            "Binge-watching the entire {series} in one weekend is now common.",
            "Filming for [the new season|the next run|new episodes] of {show_title} begins in {place} next month.",
            "{ratings} fell after the {series} moved to a later time slot.",
            "The showrunner promised answers to the biggest mysteries.",
            "{network} ordered a spin-off of {show_title}.",
            "[The opening credits|The theme tune|The title sequence] became a hit of its own.",
            "The [quiz show|cooking contest|talent competition] returns with a new host.",
        ),
    ),
    "theatre": _Bank(
        concepts={
            "work": "the new musical|the play|the revival|the West End production|the premiere|the new show",
            "artist_role": "actor|playwright|director|choreographer|leading lady|performer",
            "audience": "theatregoers|audiences|drama lovers|spectators|fans",
            "field": "theatre|live drama|the performing arts|the footlights|show business",
            "play": "play|musical|production|revival|stage show",
            "big_stage": "the West End|Broadway|a bigger venue|a larger theatre",
            "company": "cast|company|ensemble|performers",
            "ovation": "curtain call|standing ovation|encore|final bow",
            "opening": "opening night|the first preview|the premiere",
            "creator": "playwright|director|choreographer|composer",
            "venue": "Royal Playhouse|Grand Lyric Theatre|Old Vaudeville Hall|Alder Street Theatre",
        },
        templates=(
            "The new {play} opened at the {venue} in {place}.",
            "The audience rose for a long {ovation} after the final scene.",
            "The {creator} {person} reimagines a classic tragedy.",
            "The {play} has been extended until autumn due to demand.",
            "On {opening}, the {company} received five curtain calls.",
            "The choreography in the second act is breathtaking.",
            "The set design turns the small stage into a stormy sea.",
            "The {company} rehearsed for twelve weeks before {opening}.",
            "Critics called the {play} the hit of the season.",
            "Understudies stepped in after the lead lost her voice.",
            "The {play} will transfer to {big_stage} next year.",
            "Ticket prices for the {play} have drawn criticism.",
            "[The orchestra pit|The chorus line|The revolving stage] drew gasps from [the stalls|the "
            "audience|the crowd].",
            "[Costumes|Wigs|Masks] for the production were made by hand.",
        ),
    ),
    "books": _Bank(
        concepts={
            "work": "the new novel|the memoir|the debut|the thriller|the poetry collection|the latest release",
            "artist_role": "author|novelist|writer|poet|memoirist",
            "audience": "readers|fans|bookworms|literature lovers|audiences",
            "field": "publishing|literature|fiction|letters|the literary scene",
            "book": "novel|memoir|thriller|debut|collection of stories|saga",
            "author": "author|writer|novelist|poet",
            "readers": "readers|bookworms|literature fans|reading groups",
            "prize": "literary prize|fiction award|writing prize",
            "bookshops": "bookshops|libraries|bookstores",
            "passages": "chapters|pages|sentences|passages",
            "publisher": "publisher|publishing house|imprint",
        },
        templates=(
            "The {author} {person} has won the {prize} for her {book}.",
            "{readers} are queuing at {bookshops} for the new {book}.",
            "The {book} follows three sisters across fifty years.",
            "The {passages} are lyrical and precise.",
            "The {publisher} paid a record advance for the {book}.",
            "The {author} will sign copies in {place} next week.",
            "The shortlist for the {prize} was announced on {day}.",
            "{readers} praised the twist in the final {passages}.",
            "The audiobook version is narrated by {person}.",
            "The {book} has been translated into {num} languages.",
            "The {author} spent ten years writing it.",
            "It has already been optioned for a screen adaptation.",
            "[The cover art|The first print run|The paperback edition] was unveiled this week.",
            "[A tour|A reading|A signing session] is planned at the festival of literature.",
        ),
    ),
}

# --------------------------------------------------------------------------------------------------
# Assembly
# --------------------------------------------------------------------------------------------------

_NEWS = _Shape(4, 15, 4, 0.2, 0.2)
_TOPIC_BANKS: dict[str, tuple[_Bank, dict[str, _Bank], _Shape]] = {
    "movie": (_MOVIE, _MOVIE_SUBTHEMES, _Shape(3, 8, 1, 0.3, 0.1)),
    "covid": (_COVID, _COVID_SUBTHEMES, _Shape(1, 3, 1, 0.5, 0.15)),
    "business": (_BUSINESS, _BUSINESS_SUBTHEMES, _NEWS),
    "sport": (_SPORT, _SPORT_SUBTHEMES, _NEWS),
    "politics": (_POLITICS, _POLITICS_SUBTHEMES, _NEWS),
    "tech": (_TECH, _TECH_SUBTHEMES, _NEWS),
    "entertainment": (_ENTERTAINMENT, _ENTERTAINMENT_SUBTHEMES, _NEWS),
}

SUBTHEMES: dict[str, tuple[str, ...]] = {topic: tuple(subthemes) for topic, (_, subthemes, _) in _TOPIC_BANKS.items()}

# A compiled text alternates literal strings (even positions) with choices (odd positions): a slot
# name, or a tuple of compiled alternatives written inline as "[a|b|c]".
_Compiled = tuple[str | tuple, ...]
_Source = _Compiled | Callable[[_Draw], str]

# "a" before a vowel sound becomes "an"; the look-ahead skips "a one-", "a unicorn", "a European".
_A_BEFORE_VOWEL = re.compile(r"\b([Aa]) (?=[aeiouAEIOU])(?!one|uni|use|usu|eu|Eu|Uni)")


def _compile(text: str) -> _Compiled:
    parts: list[str | tuple] = []
    literal_start = i = 0
    while i < len(text):
        if text[i] == "{":
            end = text.index("}", i)
            parts += [text[literal_start:i], text[i + 1 : end]]
        elif text[i] == "[":
            end, alternatives = _alternatives(text, i)
            parts += [text[literal_start:i], tuple(_compile(a) for a in alternatives)]
        else:
            i += 1
            continue
        i = literal_start = end + 1
    parts.append(text[literal_start:])
    return tuple(parts)


def _alternatives(text: str, start: int) -> tuple[int, list[str]]:
    """The index of the "]" that closes the "[" at start, and the "|"-separated texts inside."""
    depth, pieces, piece_start = 0, [], start + 1
    for i in range(start, len(text)):
        if text[i] == "[":
            depth += 1
        elif text[i] == "]":
            depth -= 1
            if depth == 0:
                pieces.append(text[piece_start:i])
                return i, pieces
        elif text[i] == "|" and depth == 1:
            pieces.append(text[piece_start:i])
            piece_start = i + 1
    raise ValueError(f"unclosed '[' in {text!r}")


def _slot_names(parts: _Compiled) -> Iterator[str]:
    for choice in parts[1::2]:
        if isinstance(choice, str):
            yield choice
        else:
            for alternative in choice:
                yield from _slot_names(alternative)


class _Resolved(NamedTuple):
    """One sub-theme ready to fill: its sentence pools and every slot it can use."""

    subtheme_sentences: tuple[_Compiled, ...]
    topic_sentences: tuple[_Compiled, ...]
    filler_sentences: tuple[_Compiled, ...]
    slots: dict[str, _Source]
    shape: _Shape


def _resolve(label: str, topic_bank: _Bank, bank: _Bank, shape: _Shape) -> _Resolved:
    slots: dict[str, _Source] = dict(_GENERATED)
    for concepts in (_SHARED_CONCEPTS, topic_bank.concepts, bank.concepts):
        for name, variants in concepts.items():
            slots[name] = _compile(f"[{variants}]")
    resolved = _Resolved(
        tuple(_compile(t) for t in bank.templates),
        tuple(_compile(t) for t in topic_bank.templates),
        tuple(_compile(t) for t in _FILLER),
        slots,
        shape,
    )
    # Catch a misspelt slot at import time rather than in the middle of a generator run.
    texts = [*resolved.subtheme_sentences, *resolved.topic_sentences]
    texts += [s for s in slots.values() if isinstance(s, tuple)]
    for parts in texts:
        unknown = set(_slot_names(parts)) - slots.keys()
        if unknown:
            raise KeyError(f"unknown slots {sorted(unknown)} in the banks of {label}")
    return resolved


_RESOLVED: dict[tuple[str, str], _Resolved] = {
    (topic, name): _resolve(f"{topic}/{name}", topic_bank, bank, shape)
    for topic, (topic_bank, subthemes, shape) in _TOPIC_BANKS.items()
    for name, bank in subthemes.items()
}


def _fill(parts: _Compiled, slots: dict[str, _Source], draw: _Draw) -> str:
    if len(parts) == 1:
        return parts[0]
    out = [parts[0]]
    for i in range(1, len(parts), 2):
        choice = parts[i]
        if isinstance(choice, str):
            source = slots[choice]
            out.append(source(draw) if callable(source) else _fill(source, slots, draw))
        else:
            out.append(_fill(choice[draw.below(len(choice))], slots, draw))
        out.append(parts[i + 1])
    return "".join(out)


def _sentence(parts: _Compiled, slots: dict[str, _Source], draw: _Draw) -> str:
    text = _A_BEFORE_VOWEL.sub(r"\1n ", _fill(parts, slots, draw))
    return text[0].upper() + text[1:]


class _Deck:
    """Draws templates from a pool without repeating one until the pool is used up."""

    __slots__ = ("_pool", "_left", "_draw")

    def __init__(self, pool: tuple[_Compiled, ...], draw: _Draw):
        self._pool = pool
        self._left: list[_Compiled] = []
        self._draw = draw

    def take(self) -> _Compiled:
        if not self._left:
            self._left = list(self._pool)
        i = self._draw.below(len(self._left))
        self._left[i], self._left[-1] = self._left[-1], self._left[i]
        return self._left.pop()


def compose_text(topic: str, subtheme: str, rng: np.random.Generator) -> str:
    """One post text on `subtheme` of `topic`; all randomness from rng (deterministic for a seeded rng)."""
    if topic not in SUBTHEMES:
        raise ValueError(f"unknown topic {topic!r}; expected one of {sorted(SUBTHEMES)}")
    resolved = _RESOLVED.get((topic, subtheme))
    if resolved is None:
        raise ValueError(f"unknown sub-theme {subtheme!r} of topic {topic!r}; expected one of {SUBTHEMES[topic]}")
    draw = _Draw(rng)
    shape = resolved.shape
    own = _Deck(resolved.subtheme_sentences, draw)
    shared = _Deck(resolved.topic_sentences, draw)
    filler = _Deck(resolved.filler_sentences, draw)
    # The first sentence always states the sub-theme, like a lead or an opening line.
    sentences = [_sentence(own.take(), resolved.slots, draw)]
    for _ in range(draw.between(shape.min_sentences, shape.max_sentences) - 1):
        if draw.chance(shape.subtheme_share):
            deck = own
        elif draw.chance(shape.filler_share / (1 - shape.subtheme_share)):  # given not the sub-theme
            deck = filler
        else:
            deck = shared
        sentences.append(_sentence(deck.take(), resolved.slots, draw))
    return _paragraphs(sentences, shape.max_paragraphs, draw)


def _paragraphs(sentences: list[str], max_paragraphs: int, draw: _Draw) -> str:
    """Joins sentences into 1..max_paragraphs paragraphs of at least two sentences each."""
    count = draw.between(1, max(1, min(max_paragraphs, len(sentences) // 2)))
    # Break positions at least two sentences from each other and from both ends.
    candidates = list(range(2, len(sentences) - 1))
    breaks: list[int] = []
    while len(breaks) < count - 1 and candidates:
        position = candidates.pop(draw.below(len(candidates)))
        if all(abs(position - b) >= 2 for b in breaks):
            breaks.append(position)
    bounds = [0, *sorted(breaks), len(sentences)]
    return "\n\n".join(" ".join(sentences[a:b]) for a, b in pairwise(bounds))
