"""The bundled word list: a few hundred common, concrete, lowercase English words.

Every task in the suite is answered with words from this list, so the checkers can tell a real word from
a made-up one ("eee" ends with 'e' but is not an answer) and a tiny model trained offline can learn the
whole vocabulary. The list is chosen to cover many first and last letters, so that "N different words
ending with W" and "K different words starting with L" have enough answers for most letters; the suite
uses only the letters with enough of them (see `words_by`).
"""

from __future__ import annotations

from functools import lru_cache

_RAW = """
pizza banana camera sofa zebra tuna panda cola drama opera idea area extra pasta salsa koala lava yoga soda
tea sea visa comma llama gorilla umbrella vanilla cobra
crab club crumb lamb bulb web job knob rib tub cab herb verb thumb climb comb tomb
music magic topic logic panic picnic garlic traffic comic plastic attic
bread bird cloud road hand sand wind gold card field food world word bed kid lid mud head friend island
salad sword beard pond seed wood yard
apple grape house horse stone smile table candle bottle bridge cake lake snake plate game home time rose
tree bee fire wire juice rice nose bone phone whale glue blue cube dance face knife kite bike cave wave
purple orange eagle castle puzzle shoe space shape slide store spice shade line lime wine rope pipe tape
tube globe page cage stage judge fence voice price prize maze breeze cheese goose moose mouse nurse purse
joke mole note vote zone tune gate vase village uncle engine
leaf chief roof golf wolf elf shelf cliff chef beef reef scarf surf half calf staff loaf thief cuff
dog frog log egg bag flag king ring song wing pig bug rug mug jug fog leg swing spring string wig twig
plug
fish dish brush beach church watch match lunch bench peach cloth moth bath path mouth tooth earth month
torch couch witch switch flash cash wish bush
taxi kiwi ski sushi chili bikini safari broccoli origami confetti spaghetti salami
book cook milk silk bank tank desk duck truck clock rock sock lock park fork cork pork neck deck back
pink sink drink link walk chalk hook hawk yak yolk
ball bell doll shell wall hill owl bowl towel camel pencil animal jewel snail tail nail mail pool school
tool wool wheel squirrel angel metal pearl girl soil oil goal hotel tunnel barrel eel seal meal
drum room broom farm arm film storm worm dream cream team gum plum atom gym ham jam poem palm
lemon melon moon sun rain train chain brain queen green garden kitten chicken button cotton lion onion
ocean pen hen van fan pan coin robin wagon dragon spoon crown clown town gown horn corn barn oven cabin
muffin penguin violin unicorn
piano radio potato tomato mango zoo hero photo video echo cargo hippo rhino avocado cello disco logo
taco volcano banjo tornado studio bamboo kangaroo igloo shampoo tattoo
cup map cap lamp ship shop soup jeep sheep trip top stamp camp jump pump clip lip mop chip whip step
tulip ketchup syrup group loop hoop scoop
star car jar bear pear chair door floor flower water paper tiger spider river tower mirror doctor farmer
butter sugar letter winter summer dollar collar ladder hammer finger anchor guitar computer zipper
bus glass grass dress class cactus octopus circus bonus virus lotus chess kiss boss moss gas walrus iris
atlas canvas tennis compass
cat hat bat rat boat coat goat coast carrot rabbit basket blanket jacket pocket rocket ticket planet
forest desert giant plant paint fruit belt salt tent nest vest robot parrot carpet helmet magnet wallet
street seat quilt yogurt
menu tofu emu
cow bow snow crow window pillow shadow arrow elbow rainbow yellow meadow claw straw saw paw jaw law
screw stew
box fox wax tax six mix index
baby candy city puppy party honey money monkey turkey key toy boy sky fly day tray cherry berry lady
body family story pony jelly daisy bunny donkey hockey valley library holiday
quiz jazz
"""

WORDS: tuple[str, ...] = tuple(sorted(set(_RAW.split())))
"""The bundled words, sorted and unique."""

WORD_SET: frozenset[str] = frozenset(WORDS)


@lru_cache(maxsize=None)
def words_by(position: str, letter: str) -> tuple[str, ...]:
    """The bundled words whose first (`position="start"`) or last (`"end"`) letter is `letter`."""
    if position == "start":
        return tuple(w for w in WORDS if w.startswith(letter))
    if position == "end":
        return tuple(w for w in WORDS if w.endswith(letter))
    raise ValueError(f"position must be 'start' or 'end', got {position!r}")


def letters_with(position: str, at_least: int) -> tuple[str, ...]:
    """The letters that begin (or end) at least `at_least` bundled words, alphabetically."""
    return tuple(c for c in "abcdefghijklmnopqrstuvwxyz" if len(words_by(position, c)) >= at_least)
