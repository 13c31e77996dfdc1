"""Background vocabulary for synthesized speech, and the check that keeps every digit word out of it.

The benchmark tests one-shot learning of spoken digits, so the encoders must never hear a digit word
during training (Eloff et al. 2019). :func:`digit_word_reason` is applied to every label from every
source (synthesized or recorded), not only to this list.
"""
from __future__ import annotations

import re

# Digits 0-9 in the languages espeak-ng, flite and festival speak, plus English homophones and
# spellings. A label equal to any of these is refused.
DIGIT_WORDS_BY_LANGUAGE: dict[str, tuple[str, ...]] = {
    "english": ("zero", "oh", "nought", "naught", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "niner"),
    "english_homophones": ("won", "to", "too", "for", "fore", "ate", "sicks", "nein"),
    "french": ("zéro", "zero", "un", "une", "deux", "trois", "quatre", "cinq", "six", "sept", "huit", "neuf"),
    "german": ("null", "eins", "ein", "zwei", "drei", "vier", "fünf", "funf", "sechs", "sieben", "acht", "neun"),
    "spanish": ("cero", "uno", "dos", "tres", "cuatro", "cinco", "seis", "siete", "ocho", "nueve"),
    "italian": ("zero", "uno", "due", "tre", "quattro", "cinque", "sei", "sette", "otto", "nove"),
    "portuguese": ("zero", "um", "dois", "duas", "três", "tres", "quatro", "cinco", "seis", "sete", "oito", "nove"),
    "dutch_afrikaans": ("nul", "een", "twee", "drie", "vier", "vijf", "vyf", "zes", "ses", "zeven", "sewe", "acht", "agt", "negen", "nege"),
    "swedish_danish_norwegian": ("noll", "nul", "en", "ett", "to", "två", "tre", "fyra", "fire", "fem", "sex", "seks", "sju", "syv", "åtta", "otte", "nio", "ni"),
    "polish": ("zero", "jeden", "dwa", "trzy", "cztery", "pięć", "piec", "sześć", "siedem", "osiem", "dziewięć"),
    "hungarian": ("nulla", "egy", "kettő", "ketto", "három", "harom", "négy", "negy", "öt", "ot", "hat", "hét", "het", "nyolc", "kilenc"),
    "romanian": ("zero", "unu", "doi", "trei", "patru", "cinci", "șase", "sase", "șapte", "sapte", "opt", "nouă", "noua"),
    "greek": ("miden", "ena", "dio", "tria", "tessera", "pente", "exi", "epta", "okto", "ennea"),
    "japanese": ("rei", "ichi", "ni", "san", "shi", "yon", "go", "roku", "shichi", "nana", "hachi", "kyu", "ku"),
    "mandarin": ("ling", "yi", "er", "san", "si", "wu", "liu", "qi", "ba", "jiu"),
    "hindi": ("shunya", "ek", "do", "teen", "char", "paanch", "chhe", "saat", "aath", "nau"),
    "russian": ("nol", "odin", "dva", "tri", "chetyre", "pyat", "shest", "sem", "vosem", "devyat"),
}
DIGIT_WORDS: frozenset[str] = frozenset(w for words in DIGIT_WORDS_BY_LANGUAGE.values() for w in words)
# English digit and number words that must not appear inside a label either ("someone", "weight",
# "canine", "often" all contain one); conservative on purpose.
DIGIT_SUBSTRINGS: tuple[str, ...] = (
    "zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine",
    "ten", "eleven", "twelve", "teen", "twenty", "thirty", "forty", "fifty", "hundred", "thousand", "million",
)


def digit_word_reason(label: str) -> str | None:
    """Why ``label`` counts as a digit word (so must stay out of training), or None when it is safe."""
    text = label.lower().replace("_", " ").replace("-", " ")
    if re.search(r"\d", text):
        return f"{label!r} contains a numeral"
    for token in text.split():
        if token in DIGIT_WORDS:
            langs = [lang for lang, words in DIGIT_WORDS_BY_LANGUAGE.items() if token in words]
            return f"{label!r}: {token!r} is a digit word ({', '.join(langs)})"
    for sub in DIGIT_SUBSTRINGS:
        if sub in text:
            return f"{label!r} contains the number word {sub!r}"
    return None


def split_digit_words(labels: list[str]) -> tuple[list[str], dict[str, str]]:
    """(labels that are safe, {refused label: reason})."""
    kept, refused = [], {}
    for label in labels:
        reason = digit_word_reason(label)
        if reason is None:
            kept.append(label)
        else:
            refused[label] = reason
    return kept, refused


# Hundreds of everyday English words, many of them names of things a robot may be shown. None is
# a digit word in any language (tests/test_train_words.py checks this list with digit_word_reason).
ENGLISH_WORDS: tuple[str, ...] = tuple("""
apple banana cherry grape lemon orange peach pear plum melon mango kiwi carrot potato tomato onion
garlic pepper lettuce cabbage bean pea corn rice bread butter cheese cake cookie candy sugar salt
coffee tea milk juice water soup pizza pasta noodle sandwich burger salad egg bacon chicken fish
meat yogurt cereal muffin pancake waffle jam nut almond walnut peanut popcorn chocolate
cup mug glass bottle plate bowl spoon fork knife pan pot kettle toaster oven fridge sink towel
napkin basket box bag purse wallet key lock door window wall floor roof chair table desk bed sofa
couch lamp light candle clock mirror picture frame book paper pencil pen marker crayon eraser ruler
scissors tape glue stapler folder notebook envelope stamp letter card map globe calendar 
laptop keyboard mouse screen camera radio speaker headset cable plug battery charger remote robot
printer tablet watch ring necklace bracelet earring glasses cap helmet scarf glove mitt sock
shoe boot sandal slipper shirt sweater jacket coat dress skirt jeans pants shorts belt button zipper
pocket umbrella brush comb soap shampoo toothbrush toothpaste razor blanket pillow sheet curtain
carpet rug vase flower plant leaf branch rock sand shell feather ball balloon kite puzzle block
doll teddy truck car bus train plane boat ship bike wagon tractor rocket drum guitar piano violin
flute trumpet whistle bell hammer wrench screwdriver drill saw nail screw bolt shovel rake bucket
hose ladder rope chain wire magnet spring wheel tire engine motor switch handle hook shelf drawer
cabinet closet garage garden yard fence gate street road bridge tunnel river lake ocean beach island
mountain hill valley forest desert jungle field farm barn city village town market school library
hospital museum church castle palace tower station airport harbor park zoo circus theater
dog cat horse cow pig sheep goat duck goose turkey rabbit hamster squirrel fox wolf bear lion tiger
zebra giraffe elephant monkey gorilla camel kangaroo koala panda penguin parrot owl eagle hawk crow
pigeon swan frog toad turtle snake lizard crocodile dolphin whale shark octopus crab lobster shrimp
snail worm spider ant bee wasp butterfly moth beetle ladybug mosquito dragon unicorn
red blue green yellow purple pink brown black white gray silver golden
big small little large tiny huge tall short long wide narrow thick thin heavy soft hard
smooth rough hot cold warm cool wet dry clean dirty happy sad angry calm brave shy funny silly
quick slow fast early late loud quiet bright dark empty full rich poor young old fresh sweet sour
bitter spicy tasty yummy pretty ugly strong weak sharp dull round square flat
walk run jump hop skip climb crawl swim fly dive sing dance laugh cry smile shout whisper talk
speak read write draw paint cut fold push pull lift carry drop throw catch kick hit
open close start finish begin wait stay leave come bring take give show hide find lose keep
build break fix wash cook bake eat drink sleep wake dream think know learn teach play work rest
look see hear touch feel smell taste help hold turn spin roll slide shake stir pour
left right up down forward backward inside outside above below near far here there
yes please thanks hello goodbye sorry maybe always never sometimes today tomorrow yesterday morning
evening night noon week month year summer autumn winter sunny rainy cloudy windy snowy
storm thunder lightning rainbow cloud rain snow ice smoke wind sun moon star planet sky
mother father sister brother baby grandma grandpa uncle aunt cousin friend teacher doctor nurse
farmer baker pilot sailor soldier police driver artist singer dancer player captain king queen
prince princess wizard pirate giant monster ghost angel hero
marble pebble crystal diamond pearl gold copper iron steel plastic wooden metal rubber cotton wool
silk leather velvet cardboard
apricot avocado blueberry broccoli celery cucumber lime olive pumpkin radish spinach zucchini
pretzel biscuit cracker donut bagel croissant sausage ham steak tuna salmon
basketball football baseball hockey golf soccer racket skateboard scooter sled swing 
""".split())
