

def test_caption_word_counts_counts_captions_with_the_word_or_its_plural():
    from miniclip.analysis.vocabulary import caption_word_counts

    captions = ["A dog runs on the beach .", "Two dogs and a Dog", "a hotdog stand", "boats at sea",
                "The seas are calm", "a sea lion", "the ship's deck", "a  fire truck"]
    counts = caption_word_counts(captions, ["dog", "sea", "ship", "deer", "fire truck"])
    # "hotdog" is not the word dog; "Two dogs and a Dog" counts once; "seascape" would not count either.
    assert counts == {"dog": 2, "sea": 3, "ship": 1, "deer": 0, "fire truck": 1}
