"""The bundled word list: a few hundred common, concrete, lowercase English words.

Every task in the suite is answered with words from this list, so the checkers can tell a real word from
a made-up one ("eee" ends with 'e' but is not an answer) and a tiny model trained offline can learn the
whole vocabulary. Its order is a fixed preference ranking (`responses.good_words` draws answers with
Zipf-like weights along it), so each letter has a few typical answers, as in real usage, rather than a
flat spread over dozens. The list covers many first and last letters, lengths and letter patterns, so that
most constraints of the suite have several answers; the suite keeps the cells with enough of them
(`suite.SPARE`). Most words are one token of the suite's tokenizer (vocabulary 1024): an answer of N words
is then N steps for the model, which measurably helps a tiny model learn it.
"""

from __future__ import annotations

_RAW = """
pizza banana camera sofa zebra tuna panda cola opera pasta koala llama soda tea sea
bread bird cloud road hand sand wind gold card food word bed kid lid mud head seed wood
apple grape house horse stone smile table candle bottle bridge cake lake snake plate game home rose tree bee
fire juice rice nose bone phone whale blue cube dance face knife kite bike cave wave cheese mouse
dog frog log egg bag flag king ring song wing pig bug rug mug
fish dish brush beach church watch lunch bench peach cloth moth bath path mouth tooth
book cook milk silk bank tank desk duck truck clock rock sock lock park fork neck
ball bell doll shell wall hill owl bowl towel camel pencil snail tail nail pool school tool wheel
drum room broom farm arm film storm worm dream cream team gum plum jam
lemon melon moon sun rain train chain queen garden kitten chicken button lion onion pen van fan pan coin
dragon spoon crown clown town horn corn
piano radio potato tomato mango zoo hero photo video hippo taco volcano
cup map cap lamp ship shop soup sheep top stamp camp jump pump lip mop chip step
star car jar bear pear chair door floor flower water paper tiger spider river tower mirror doctor butter
sugar letter winter summer hammer finger guitar
bus glass grass dress class cactus octopus circus chess kiss boss moss gas
cat hat bat rat boat coat goat carrot rabbit basket blanket jacket pocket rocket ticket planet forest
desert giant plant paint fruit belt salt tent nest robot parrot carpet
cow bow snow crow window pillow shadow arrow elbow rainbow yellow claw straw saw paw jaw
baby candy city puppy party honey money monkey key toy boy sky fly day tray cherry berry pony jelly bunny
donkey
"""

WORDS: tuple[str, ...] = tuple(dict.fromkeys(_RAW.split()))
"""The bundled words, unique, in a fixed order of preference: the generators draw earlier words more often
(see `responses.good_words`), the way real answers favour common words."""

WORD_SET: frozenset[str] = frozenset(WORDS)
WORD_RANK: dict[str, int] = {w: i for i, w in enumerate(WORDS)}

